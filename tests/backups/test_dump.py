"""Full logical backups: one snapshot for the dump and the row counts, globals beside it, atomic files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from backups import files, rowcounts
from backups.kinds import logical as dump
from backups.models import Backup, BackupPolicy
from portal import pg
from portal.embedded import sample
from tests.backups.conftest import leftovers, run_now


def test_it_takes_a_verified_directory_backup_with_exact_row_counts(logical_policy, backup_root):
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    assert backup.format == "directory" and backup.name.endswith(".dump.d")
    assert backup.manifest["tables"] == sample.row_counts(0.02)
    assert backup.local_path.is_dir() and (backup.local_path / "toc.dat").exists()
    assert files.tree_digest(backup.local_path)[:2] == (backup.size_bytes, backup.sha256)
    assert backup.server_version.startswith("15.") and backup.client_version.startswith("15.")
    assert backup.triggered_by == "tester" and backup.backup_seconds > 0
    assert backup.verification_seconds > 0
    assert leftovers(backup_root) == []


def test_it_dumps_the_cluster_globals_without_passwords_beside_the_backup(logical_policy):
    backup = run_now(logical_policy)
    globals_file = logical_policy.primary_root() / backup.manifest["globals"]["path"]
    text = globals_file.read_text()
    assert globals_file.name.endswith(".globals.sql")
    assert "CREATE ROLE paws360_admin" in text and "PASSWORD" not in text
    assert files.sha256_of(globals_file) == backup.manifest["globals"]["sha256"]
    assert set(backup.artifact_paths()) == {backup.path, backup.manifest["globals"]["path"],
                                            backup.catalog_manifest_path}


def test_a_custom_format_backup_is_one_dump_file_verified_by_a_parallel_restore(logical_policy):
    logical_policy.dump_format = BackupPolicy.DumpFormat.CUSTOM
    logical_policy.save()
    backup = run_now(logical_policy)
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    assert backup.local_path.is_file() and backup.name.endswith(".dump")
    assert backup.local_path.read_bytes()[:5] == b"PGDMP"
    assert files.sha256_of(backup.local_path) == backup.sha256
    assert backup.size_bytes == backup.local_path.stat().st_size


def test_the_row_counts_and_the_dump_see_the_same_snapshot(sample_database):
    target = sample_database.target()
    before = sample.row_counts(0.02)["paws360.courses"]
    with dump.exported_snapshot(target) as snapshot:
        with pg.connect(target) as writer:  # committed while the snapshot is open
            writer.execute("INSERT INTO paws360.courses (id, code, title, department, credits, capacity) "
                           "SELECT 100000 + g, 'NEW ' || g, 'New course', 'CS', 3, 30 FROM generate_series(1, 5) g")
        tables = [t for t in rowcounts.user_tables(snapshot.conn) if t.label == "paws360.courses"]
        counted = rowcounts.count_rows(snapshot.conn, tables)["paws360.courses"]
        dumped = pg.run("pg_dump", [f"--snapshot={snapshot.id}", "--data-only", "--table=paws360.courses"],
                        target=target, capture_stdout=True).stdout.decode()
    copy_rows = dumped.split("FROM stdin;\n", 1)[1].split("\n\\.\n", 1)[0].splitlines()
    assert counted == len(copy_rows) == before
    with pg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM paws360.courses").fetchone()[0] == before + 5


def test_the_counting_waits_until_a_parallel_dump_leaves_one_of_its_jobs_idle(sample_database):
    with pg.connect(sample_database.target()) as conn, ThreadPoolExecutor(max_workers=1) as pool:
        tables = rowcounts.user_tables(conn)
        counter = rowcounts.IdleCoreCounter(pool, conn, tables, jobs=2)
        for item in range(len(tables) - 2):  # two tables left, both being dumped
            counter.on_line(f"pg_dump: finished item {item} TABLE DATA t{item}")
            counter.on_line(f'pg_dump: dumping contents of table "paws360.t{item}"')
        assert not counter.started
        counter.on_line("pg_dump: finished item 99 TABLE DATA courses")  # one table left: a job is idle
        assert counter.started
        assert counter.result() == rowcounts.count_rows(conn, tables)
        assert rowcounts.IdleCoreCounter(pool, conn, tables, jobs=1).started  # custom format: beside pg_dump at once


@pytest.mark.parametrize("compression", [1, 6])
def test_the_estimate_follows_the_policys_previous_output(logical_policy, compression):
    logical_policy.compression = compression
    logical_policy.save()
    first = run_now(logical_policy)
    table_bytes = first.manifest["table_bytes"]
    assert first.estimated_bytes == round(table_bytes * dump.OUTPUT_RATIO[compression])
    assert dump.estimate_output(logical_policy, table_bytes) == first.size_bytes
