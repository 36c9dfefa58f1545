"""An end of recovery before the target is a failure, never a promotion: caused for real, with WAL that is
missing or damaged in the archive after the catalog recorded it."""

from __future__ import annotations

from pathlib import Path

import pytest

from backups.kinds import base_extract
from backups.models import Backup, WalArchive
from backups.wal import walarchive
from portal import pg
from portal.jobs import run_job
from recovery import approvals, newcluster, passfile, pitr, replay
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.newcluster import NewCluster
from recovery.perform import perform
from tests.clusters import RUN_AS
from tests.recovery.pitr_fixtures import pitr_request

pytestmark = pytest.mark.django_db(transaction=True)


def newest_segment(archive: WalArchive) -> Path:
    segment = archive.segments.filter(kind="segment").order_by("-segno").first()
    return Path(walarchive.stored(archive.folder, segment.name))


def never_promoted(cluster: NewCluster) -> bool:
    """No new timeline was ever chosen: promotion writes 00000002.history into pg_wal."""
    return not list((cluster.data / "pg_wal").glob("*.history"))


def test_wal_that_runs_out_before_the_target_ends_recovery_as_a_failure(archiving, marked_target, recovery_root):
    backup = Backup.objects.get(cluster=archiving.cluster)
    newest_segment(archiving).unlink()  # the segment with the first commit after the target, gone unnoticed
    cluster = NewCluster(newcluster.folder_for("ran-out"), RUN_AS, 15)
    newcluster.create_folders(cluster)
    base_extract.extract(backup, cluster.data, os_user=cluster.os_user, on_bytes=lambda done, total: None)
    port = pitr.free_port()
    credentials = passfile.write(archiving.cluster, cluster.name, "127.0.0.1", port)
    newcluster.write_settings(cluster, pitr.recovery_settings(cluster, port, archiving, marked_target), "test")
    newcluster.start(cluster)
    lines: list[str] = []
    watch = replay.Watch(cluster=cluster, target=pg.Target("127.0.0.1", port, "tester", passfile=str(credentials)),
                         target_time=marked_target, start_lsn=walarchive.parse_lsn(backup.start_lsn),
                         bound_lsn=walarchive.parse_lsn(backup.end_lsn) + 2**24, segment_size=archiving.segment_size,
                         say=lines.append, progress=lambda done, total, note: None, cancel=None, timeout=120)
    with pytest.raises(replay.ReplayFailed, match="recovery ended before configured recovery target was reached"):
        replay.follow(watch)
    assert newcluster.postmaster_pid(cluster) is None  # PostgreSQL ended it; nothing was promoted
    assert never_promoted(cluster)
    assert any("FATAL" in line for line in lines)


def test_a_damaged_archived_segment_fails_the_recovery_and_removes_what_it_built(archiving, marked_target,
                                                                                 recovery_root, dba):
    segment = newest_segment(archiving)
    segment.write_bytes(segment.read_bytes()[:-4096])  # the catalog saw it whole; zstd's checksum now fails
    request = approvals.submit(pitr_request(archiving, marked_target), dba)
    run_job(RecoveryRequest, request.pk, perform)
    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.FAILED
    assert "the server stopped before reaching the target" in request.error
    assert "walarchive fetch:" in request.error and "cannot be decompressed" in request.error, request.error
    states = dict(request.steps.values_list("name", "status"))
    assert states[pitr.STEP_REPLAY] == RecoveryStep.Status.FAILED
    assert states[pitr.STEP_PROMOTE] == RecoveryStep.Status.SKIPPED
    assert request.result_cluster is None
    root = Path(request.work_directory)
    assert not root.exists()  # stopped, data removed
    kept = recovery_root / "clusters" / "failed" / f"{request.pk}-{root.name}.server.log"
    assert "FATAL" in kept.read_text()
    assert not passfile.path_for(root.name).exists()
