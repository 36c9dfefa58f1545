"""A real cluster archiving into the portal's archive: set-up and proof, and archiving's faults."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from backups.models import WalArchive, WalSegment
from backups.wal import catalog, setup, status, walarchive
from portal import pg
from tests.backups.conftest import switch_wal
from tests.clusters import free_port
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


def archived(archive: WalArchive, name: str) -> bool:
    return walarchive.stored(archive.folder, name) is not None


def test_configure_turns_archiving_on_restarting_when_needed_and_proves_it(scratch_cluster, db):
    cluster = scratch_cluster.register()
    lines: list[str] = []
    archive = setup.configure(cluster, folder=scratch_cluster.root / "wal", log=lines.append)
    assert any("restarting" in line for line in lines)
    assert archive.proven_at and archived(archive, archive.proof_segment)
    with pg.connect(cluster.target()) as conn:
        settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                     "('archive_mode', 'archive_timeout', 'archive_command')").fetchall())
        sysid = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
    assert settings["archive_mode"] == "on" and settings["archive_timeout"] == "60"
    assert settings["archive_command"] == setup.archive_command(archive)
    assert (archive.folder / walarchive.MARKER).read_text().strip() == sysid
    # Run again: no restart this time, the same folder, proved again.
    lines.clear()
    again = setup.configure(cluster, log=lines.append)
    assert again.pk == archive.pk and not any("restarting" in line for line in lines)
    assert again.proof_segment != archive.proof_segment and archived(again, again.proof_segment)


def test_configure_refuses_a_folder_that_is_another_clusters_archive(scratch_cluster, db, tmp_path):
    cluster = scratch_cluster.register()
    folder = scratch_cluster.folder("wal")
    (folder / walarchive.MARKER).write_text("1234\n")
    with pytest.raises(setup.ArchivingError, match="database system 1234"):
        setup.configure(cluster, folder=folder, log=lambda line: None)


def test_the_archive_command_is_quoted_for_the_shell_and_percent_signs(db, scratch_cluster):
    archive = WalArchive(cluster=scratch_cluster.register(), path="/srv/wal archive/50%; rm -rf x")
    command = setup.archive_command(archive)
    assert "'/srv/wal archive/50%%; rm -rf x'" in command
    assert command.count(" %p %f ") == 1


def test_the_catalog_records_each_segment_with_its_checksum_and_newest_commit(archiving):
    target = archiving.cluster.target()
    names = [switch_wal(target, rows=100) for _ in range(3)]
    wait_for(lambda: all(archived(archiving, n) for n in names), message="segments archived")
    result = catalog.scan(archiving)
    assert result.new >= 3
    segments = {s.name: s for s in archiving.segments.all()}
    for name in names:
        segment = segments[name]
        assert segment.state == WalSegment.State.PRESENT and segment.compressed
        assert len(segment.sha256) == 64 and segment.size_bytes > 0
        assert segment.last_commit_at is not None
    assert catalog.find_gaps(archiving) == []
    assert catalog.scan(archiving).new == 0


def test_a_segment_removed_from_the_middle_is_found_as_a_gap(archiving):
    target = archiving.cluster.target()
    names = [switch_wal(target) for _ in range(4)]
    wait_for(lambda: all(archived(archiving, n) for n in names), message="segments archived")
    catalog.scan(archiving)
    os.unlink(walarchive.stored(archiving.folder, names[1]))
    result = catalog.scan(archiving)
    assert result.vanished == 1
    (gap,) = catalog.find_gaps(archiving)
    assert (gap.first_name, gap.count) == (names[1], 1)
    sample = status.take_sample(archiving)
    assert sample.gaps == 1 and sample.alert == "critical"
    assert any("gap in the archive" in p["text"] for p in sample.problems)


def test_a_flipped_byte_in_an_archived_segment_is_found_by_the_checksum(archiving):
    name = switch_wal(archiving.cluster.target())
    wait_for(lambda: archived(archiving, name), message="segment archived")
    catalog.scan(archiving)
    assert catalog.verify(archiving) == []
    path = Path(walarchive.stored(archiving.folder, name))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    (damaged,) = catalog.verify(archiving)
    assert damaged.name == name and damaged.state == WalSegment.State.CORRUPT
    assert "sha256" in damaged.problem
    assert [g.first_name for g in catalog.find_gaps(archiving)] == [name]


def test_archiving_goes_on_while_the_portal_database_is_unreachable(archiving, scratch_cluster, monkeypatch):
    """The server runs the archive command with an environment in which the portal's database is a port where
    nothing listens; segments are archived all the same, with no failure."""
    dead = f"postgres://portal@127.0.0.1:{free_port()}/portal"
    for name, value in {"DATABASE_URL": dead, "DJANGO_SETTINGS_MODULE": "portal.settings",
                        "PORTAL_VAR": "/nonexistent", "PGPASSFILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    scratch_cluster.stop()
    scratch_cluster.start()
    names = [switch_wal(scratch_cluster.target()) for _ in range(3)]
    wait_for(lambda: all(archived(archiving, n) for n in names), message="segments archived")
    with pg.connect(scratch_cluster.target()) as conn:
        assert conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0] == 0


@pytest.fixture
def tiny_archive(scratch_cluster, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = scratch_cluster.root / "wal"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_archive_disk_fails_with_no_partial_file_and_recovers_with_no_gap(
        scratch_cluster, tiny_archive, db):
    cluster = scratch_cluster.register()
    archive = setup.configure(cluster, folder=tiny_archive, compression="none", log=lambda line: None)
    filler = tiny_archive / "filler"
    free = os.statvfs(tiny_archive).f_bavail * os.statvfs(tiny_archive).f_frsize
    with open(filler, "wb") as out:  # leaves less room than one 16 MB segment
        out.write(b"\0" * (free - 8 * 1024 * 1024))
    target = cluster.target()
    names = [switch_wal(target), switch_wal(target)]
    with pg.connect(target) as conn:
        wait_for(lambda: conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0] > 0,
                 message="the archiver to fail")
        assert conn.execute("SELECT last_failed_wal FROM pg_stat_archiver").fetchone()[0] == names[0]
    time.sleep(1)
    leftovers = sorted(p.name for p in tiny_archive.iterdir())
    assert not any(archived(archive, n) for n in names)
    assert not any(name.startswith(walarchive.TEMP_PREFIX) for name in leftovers), leftovers
    filler.unlink()
    with pg.connect(target) as conn:
        conn.execute("SELECT txid_current()")  # PostgreSQL retries on its own; a new segment wakes it sooner
    wait_for(lambda: all(archived(archive, n) for n in names), timeout=90, message="the retries to succeed")
    catalog.scan(archive)
    assert catalog.find_gaps(archive) == []
    assert archive.segments.filter(name__in=names, state=WalSegment.State.PRESENT).count() == 2
