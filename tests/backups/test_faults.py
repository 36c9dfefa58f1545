"""Faults, caused for real: a killed pg_dump, a full disk, an unreachable server, wrong credentials,
flipped bytes and a truncated dump that `pg_restore --list` still accepts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from backups import files, restore, verify
from backups.models import Backup, BackupPolicy
from backups.storage.locations import MARKER
from portal import pg
from portal.models import ManagedCluster, ManagedDatabase
from tests.backups.conftest import QuietReporter, in_thread, init_default_location, leftovers, run_now
from tests.conftest import wait_for

AFTER_SUCCESS = "after success: offsite copies and retention"


def snapshot_of(backup: Backup) -> dict[str, str]:
    """What is on disk for `backup`: each artifact's sha256 (a folder's tree digest)."""
    root = backup.policy.primary_root()
    return {rel: files.tree_digest(root / rel)[1] if (root / rel).is_dir() else files.sha256_of(root / rel)
            for rel in backup.artifact_paths()}


def flip_bytes(path: Path, offset: int, count: int = 4) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        data = file.read(count)
        file.seek(offset)
        file.write(bytes(b ^ 0xFF for b in data))


@pytest.fixture(params=["directory", "custom"])
def each_format(request, logical_policy) -> BackupPolicy:
    """The full-backup policy, in each dump format."""
    logical_policy.dump_format = request.param
    logical_policy.save()
    return logical_policy


def largest_file(backup: Backup) -> Path:
    path = backup.local_path
    return max(path.glob("*.dat.gz"), key=lambda p: p.stat().st_size) if path.is_dir() else path


@pytest.mark.django_db(transaction=True)
def test_a_killed_pg_dump_fails_the_backup_and_leaves_nothing(each_format, sample_database, backup_root):
    older = run_now(each_format)
    assert older.status == Backup.Status.SUCCEEDED
    on_disk = snapshot_of(older)

    # A session holding a lock keeps pg_dump waiting, long enough to find it and kill it.
    with pg.connect(sample_database.target(), autocommit=False) as locker:
        locker.execute("LOCK TABLE paws360.enrollments IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=in_thread(run_now), args=(each_format,))
        worker.start()
        backup = wait_for(lambda: Backup.objects.filter(log__contains="pg_dump started").exclude(pk=older.pk).first(),
                          message="pg_dump to start")
        pid = int(re.search(r"pg_dump started \(pid (\d+)\)", backup.log).group(1))
        assert leftovers(backup_root), "the temporary file or folder exists while pg_dump runs"
        os.kill(pid, signal.SIGKILL)
        worker.join(timeout=60)
        locker.rollback()

    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED
    assert "killed by SIGKILL" in backup.error
    assert backup.verification != Backup.Verification.VERIFIED and not backup.sha256
    assert leftovers(backup_root) == []
    assert not backup.local_path.exists()
    assert AFTER_SUCCESS not in backup.log
    older.refresh_from_db()
    assert older.is_good and snapshot_of(older) == on_disk


@pytest.fixture
def tiny_root(embedded_scratch, tmp_path: Path, settings, monkeypatch):
    """BACKUP_ROOT on a real 1 MB tmpfs (and the scratch cluster registered, as `backup_root` does)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    settings.BACKUP_ROOT = mount
    monkeypatch.setenv("BACKUP_ROOT", str(mount))
    init_default_location()
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dump_format", ["directory", "custom"])
def test_a_full_disk_fails_the_backup_keeps_the_older_one_and_skips_retention(sample_database, tiny_root,
                                                                              dump_format):
    policy = BackupPolicy.objects.create(name="full", kind="logical", cluster=sample_database.cluster,
                                         database=sample_database, dump_format=dump_format)
    older = run_now(policy)
    assert older.status == Backup.Status.SUCCEEDED, older.error
    on_disk = snapshot_of(older)
    free = os.statvfs(tiny_root).f_bavail * os.statvfs(tiny_root).f_frsize
    (tiny_root / "filler").write_bytes(b"\0" * (free - 64 * 1024))  # leave 64 kB: less than a backup

    backup = run_now(policy)
    assert backup.status == Backup.Status.FAILED
    assert "No space left on device" in backup.error
    assert backup.verification != Backup.Verification.VERIFIED and not backup.sha256
    assert not backup.local_path.exists() and leftovers(tiny_root) == []
    assert AFTER_SUCCESS not in backup.log and AFTER_SUCCESS in older.log
    older.refresh_from_db()
    assert older.is_good and snapshot_of(older) == on_disk


@pytest.fixture
def scratch_policy(db, scratch_cluster, backup_root) -> BackupPolicy:
    cluster = ManagedCluster.objects.create(name="scratch", host="127.0.0.1", port=scratch_cluster.port,
                                            role=scratch_cluster.role, passfile=str(scratch_cluster.passfile))
    database = ManagedDatabase.objects.create(cluster=cluster, name="postgres")
    return BackupPolicy.objects.create(name="scratch full", kind="logical", cluster=cluster, database=database)


def test_a_backup_of_a_healthy_scratch_cluster_succeeds(scratch_policy):
    assert run_now(scratch_policy).status == Backup.Status.SUCCEEDED


def test_wrong_credentials_fail_the_backup_with_the_reason(scratch_policy, scratch_cluster, backup_root):
    scratch_cluster.passfile.write_text(f"127.0.0.1:{scratch_cluster.port}:*:tester:not-the-password\n")
    backup = run_now(scratch_policy)
    assert backup.status == Backup.Status.FAILED
    assert "cannot connect to tester@127.0.0.1" in backup.error
    assert 'password authentication failed for user "tester"' in backup.error
    assert "not-the-password" not in backup.error + backup.log
    assert not backup.is_good and not backup.sha256 and list(backup_root.rglob("*")) == [backup_root / MARKER]


def test_an_unreachable_server_fails_the_backup_with_the_reason(scratch_policy, scratch_cluster, backup_root):
    scratch_cluster.stop()
    backup = run_now(scratch_policy)
    assert backup.status == Backup.Status.FAILED
    assert f"cannot connect to tester@127.0.0.1:{scratch_cluster.port}/postgres" in backup.error
    assert "Connection refused" in backup.error
    assert not backup.is_good and not backup.sha256 and list(backup_root.rglob("*")) == [backup_root / MARKER]


def test_flipped_bytes_fail_verification_on_the_checksum_and_a_restore_refuses(each_format, scratch_database):
    backup = run_now(each_format)
    assert backup.verification == Backup.Verification.VERIFIED
    victim = largest_file(backup)
    flip_bytes(victim, victim.stat().st_size // 2)

    assert not verify.verify(backup, QuietReporter(backup))
    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.FAILED
    assert "sha256" in backup.verification_error and "catalogued" in backup.verification_error
    with pytest.raises(restore.ChecksumMismatch):
        restore.restore_logical(backup, scratch_database, QuietReporter(backup))
    with pg.connect(scratch_database) as conn:  # nothing was restored
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'paws360'").fetchone()[0] == 0


def test_a_truncated_dump_that_pg_restore_list_accepts_fails_verification(each_format, embedded_scratch):
    backup = run_now(each_format)
    victim = largest_file(backup)
    with open(victim, "r+b") as file:
        file.truncate(victim.stat().st_size * 2 // 3)
    # As if it had been written truncated: the catalogue's checksum is the truncated file's.
    backup.sha256 = files.tree_digest(backup.local_path)[1] if backup.local_path.is_dir() else files.sha256_of(victim)
    backup.save()

    listed = pg.run("pg_restore", ["--list", str(backup.local_path)], capture_stdout=True)
    assert listed.returncode == 0 and b"TABLE DATA paws360 enrollments" in listed.stdout

    assert not verify.verify(backup, QuietReporter(backup))
    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.FAILED
    assert "pg_restore" in backup.verification_error or "row counts differ" in backup.verification_error
    assert not list(Path(backup.policy.primary_root()).rglob(".partial-*"))
    with pg.connect(embedded_scratch.target()) as conn:  # the scratch database was dropped
        assert conn.execute("SELECT count(*) FROM pg_database WHERE starts_with(datname, %s)",
                            [verify.scratch_prefix(backup)]).fetchone()[0] == 0
