"""Physical base backups of a real cluster: taken, recorded, verified; killed mid-run; the recoverable window."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from django.test import override_settings

from backups import files, pipeline, runs, verify
from backups.models import Backup, BackupPolicy
from backups.wal import catalog as walcatalog
from backups.wal import retention as walretention
from backups.wal import status as walstatus
from backups.wal import walarchive
from backups.wal.window import recoverable_window
from portal.jobs import run_job
from tests.backups.conftest import QuietReporter, local_location, switch_wal
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def base_policy(archiving, tmp_path) -> BackupPolicy:
    location = local_location("local-test", tmp_path / "backups")
    policy = BackupPolicy.objects.create(name="scratch base", kind=BackupPolicy.Kind.BASE, cluster=archiving.cluster,
                                         retention_days=7, schedule="0 1 * * *")
    policy.locations.add(location)
    return policy


def take(policy: BackupPolicy) -> Backup:
    """Through the one pipeline, as a worker does: take, verify, copy, retention."""
    backup = runs.create(policy, actor="test", via="test")
    run_job(Backup, backup.pk, pipeline.perform)
    backup.refresh_from_db()
    return backup


def test_a_base_backup_is_taken_recorded_and_verified(base_policy, archiving):
    backup = take(base_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    folder = backup.local_path
    assert folder.is_dir() and folder.parent == Path(base_policy.primary_root()) / "scratch" / "base"
    assert {p.name for p in folder.iterdir()} >= {"backup_manifest", "base.tar.zst", "pg_wal.tar"}
    assert not list(folder.parent.glob(f"{files.TEMP_PREFIX}*"))
    assert backup.start_lsn and backup.end_lsn and backup.timeline == 1
    timeline, segno = walarchive.parse_segment(backup.start_wal, archiving.segment_size)
    assert timeline == backup.timeline
    assert segno * archiving.segment_size <= walarchive.parse_lsn(backup.start_lsn) < (segno + 1) * 16 * 2**20
    assert backup.size_bytes == sum(p.stat().st_size for p in folder.iterdir())
    assert backup.progress_total and backup.progress_done
    assert "server-zstd" in backup.format


def test_a_damaged_base_backup_fails_verification(base_policy):
    backup = take(base_policy)
    manifest = backup.local_path / "backup_manifest"
    manifest.write_text(manifest.read_text().replace('"Size": 8192', '"Size": 8193', 1))
    assert not verify.verify(backup, QuietReporter(backup))
    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.FAILED
    assert backup.verification_error.startswith(f"sha256 of {backup.name} is ")
    assert backup.verification_error.endswith("files that differ: backup_manifest")
    # Damaged before it was catalogued (the catalog's checksums are of the damaged files): pg_verifybackup finds it.
    backup.size_bytes, backup.sha256, backup.manifest["files"] = files.tree_digest(backup.local_path)
    backup.save()
    assert not verify.verify(backup, QuietReporter(backup))
    backup.refresh_from_db()
    assert backup.verification_error.startswith("pg_verifybackup:")
    assert backup.verification == Backup.Verification.FAILED


def pg_basebackup_child() -> int | None:
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            if comm == "pg_basebackup" and (entry / "environ").read_bytes().count(b"paws360-basebackup") and \
                    me in _ancestors(int(entry.name)):
                return int(entry.name)
    return None


def _ancestors(pid: int) -> set[int]:
    seen = set()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        seen.add(pid)
    return seen


@override_settings(BASE_BACKUP_MAX_RATE="32k")
def test_a_base_backup_killed_mid_run_is_failed_and_never_counted(base_policy, archiving):
    backup = runs.create(base_policy, actor="test", via="test")
    worker = threading.Thread(target=run_job, args=(Backup, backup.pk, pipeline.perform))
    worker.start()
    pid = wait_for(pg_basebackup_child, message="pg_basebackup to start")
    wait_for(lambda: Backup.objects.get(pk=backup.pk).progress_done > 0, message="bytes to stream")
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=60)
    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED
    assert "pg_basebackup" in backup.error
    base_dir = base_policy.primary_root() / "scratch" / "base"
    assert list(base_dir.iterdir()) == []  # neither the final name nor the temporary folder
    assert recoverable_window(archiving.cluster).start is None
    assert walretention.protected_from(archiving) is None


def test_the_window_runs_from_the_oldest_kept_backup_and_ends_before_a_gap(base_policy, archiving):
    target = archiving.cluster.target()
    backup = take(base_policy)
    names = [switch_wal(target, rows=10) for _ in range(4)]
    wait_for(lambda: all(walarchive.stored(archiving.folder, n) for n in names), message="archived")
    walstatus.take_sample(archiving)
    whole = recoverable_window(archiving.cluster)
    assert whole.start == backup.finished and whole.gaps == []
    newest_commit = archiving.segments.get(name=names[-1]).last_commit_at
    assert whole.end == newest_commit
    os.unlink(walarchive.stored(archiving.folder, names[2]))
    walcatalog.scan(archiving)
    broken = recoverable_window(archiving.cluster)
    start, end, gaps = broken.as_tuple()
    assert [g.first_name for g in gaps] == [names[2]]
    assert start == backup.finished
    assert end == archiving.segments.get(name=names[1]).last_commit_at < newest_commit
    assert "recover to any moment between" in str(broken)


def test_wal_retention_removes_old_segments_but_never_those_the_oldest_kept_backup_needs(base_policy, archiving):
    target = archiving.cluster.target()
    before = [switch_wal(target) for _ in range(2)]
    backup = take(base_policy)
    after = [switch_wal(target) for _ in range(2)]
    wait_for(lambda: all(walarchive.stored(archiving.folder, n) for n in before + after), message="archived")
    walcatalog.scan(archiving)
    archiving.segments.update(arrived_at=backup.finished.replace(year=backup.finished.year - 1))
    removed = walretention.apply(archiving)
    assert removed >= 2
    for name in before:
        assert walarchive.stored(archiving.folder, name) is None
    keep_from = walarchive.parse_segment(backup.start_wal, archiving.segment_size)[1]
    kept = archiving.segments.filter(kind="segment", segno__gte=keep_from)
    assert kept.exists() and not kept.filter(state="removed").exists()
    assert all(walarchive.stored(archiving.folder, s.name) for s in kept)
    from portal.models import AuditEvent
    event = AuditEvent.objects.filter(action="wal.retention").latest("id")
    assert event.details["removed"] == removed
