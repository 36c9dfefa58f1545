"""The worker running a point-in-time recovery is killed mid-replay (a real `manage.py qcluster`, SIGKILL):
the reaper fails the request and stops the server the dead worker left running; the source is untouched."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path

import pytest

from backups.kinds import base_extract
from backups.models import Backup, BackupPolicy, WalArchive
from backups.wal import walarchive
from portal import pg
from portal.jobs import HOST, alive, reap_dead_jobs
from portal.models import AuditEvent
from recovery import approvals, newcluster, passfile, pitr
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.newcluster import NewCluster, postmaster_pid
from recovery.steps import PER_STEP
from tests.clusters import RUN_AS
from tests.conftest import wait_for
from tests.recovery.pitr_fixtures import (
    SLOW_FETCH,
    labels,
    mark_target,
    pitr_request,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def long_replay_target(archiving: WalArchive, base_policy: BackupPolicy) -> datetime:
    """The markers around the target after four more segments of WAL: a replay that takes several seconds."""
    return mark_target(archiving, base_policy, segments_between=4)


@pytest.fixture
def slow_worker(qcluster_env: None, qcluster):
    """The qcluster, whose recoveries fetch WAL through a restore command that takes a second per file."""
    return qcluster


@pytest.fixture
def qcluster_env(monkeypatch, recovery_root: Path) -> None:
    monkeypatch.setenv("WAL_ARCHIVE_PROGRAM", str(SLOW_FETCH))
    monkeypatch.setenv("RECOVERY_ROOT", str(recovery_root / "clusters"))
    monkeypatch.setenv("RECOVERY_PASSFILE_DIR", str(recovery_root / "secrets"))


def source_state(target: pg.Target) -> tuple:
    with pg.connect(target) as conn:
        return conn.execute("SELECT pg_postmaster_start_time(), pg_is_in_recovery(), "
                            "(SELECT count(*) FROM markers)").fetchone()


def replaying(request: RecoveryRequest) -> int | None:
    """The pid of the recovered server, once the replay step runs."""
    request.refresh_from_db()
    step = request.steps.filter(name=pitr.STEP_REPLAY).first()
    if not request.work_directory or step is None or step.status != RecoveryStep.Status.RUNNING:
        return None
    return postmaster_pid(NewCluster(Path(request.work_directory), RUN_AS))


def test_a_worker_killed_mid_replay_is_reaped_and_its_server_stopped(archiving, long_replay_target, recovery_root,
                                                                    dba, slow_worker):
    before = source_state(archiving.cluster.target())
    request = approvals.submit(pitr_request(archiving, long_replay_target), dba)
    server = wait_for(lambda: replaying(request), timeout=90, message="the recovered server to replay")
    # Replay progress on the request, in bytes of WAL: from the backup's start LSN to the end of the archived
    # segment that holds the first commit after the target (the four segments written in between, and more).
    replay_share_starts = (request.steps.get(name=pitr.STEP_REPLAY).position - 1) * PER_STEP
    wait_for(lambda: RecoveryRequest.objects.filter(pk=request.pk, progress_note__startswith="replaying WAL",
                                                    progress_done__gt=replay_share_starts).exists(),
             message="replay progress")
    request.refresh_from_db()
    bound = pitr.replay_bound(archiving, request.backup, long_replay_target)
    total_mb = (bound - walarchive.parse_lsn(request.backup.start_lsn)) / 2**20
    assert f" of at most {total_mb:.0f} MB to the target" in request.progress_note
    assert replay_share_starts < request.progress_done < replay_share_starts + PER_STEP
    os.kill(request.worker_pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{request.worker_pid}").exists(), message="the worker to die and be reaped")
    cluster = NewCluster(Path(request.work_directory), RUN_AS)
    assert postmaster_pid(cluster) == server  # the dead worker's server lives on, detached from it

    assert reap_dead_jobs() >= 1
    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error.startswith(f"reaped: worker process {request.worker_pid}")
    assert not alive(server) and postmaster_pid(cluster) is None
    assert not cluster.root.exists()
    cleanup = AuditEvent.objects.get(action="recovery.pitr.cleanup", object_id=str(request.pk))
    assert cleanup.details["server_was_running"] is True
    assert request.result_cluster is None
    reaped = AuditEvent.objects.get(action="recovery.cleanup", object_id=str(request.pk))
    assert reaped.details["after"] == "worker died"
    assert set(request.steps.values_list("status", flat=True)) >= {RecoveryStep.Status.FAILED}

    assert source_state(archiving.cluster.target()) == before  # still running, never restarted, same data
    assert labels(archiving.cluster.target()) == {"before", "after"}


def test_what_a_dead_run_left_running_is_cleaned_up_by_the_next_recovery(archiving, marked_target, recovery_root):
    """A run that died where no reaper hook ran (e.g. the portal's database was down): its server still runs
    paused at the target; the next recovery stops it and removes its data before it starts."""
    backup = Backup.objects.get(cluster=archiving.cluster)
    cluster = NewCluster(newcluster.folder_for("left-behind"), RUN_AS, 15)
    dead = pitr_request(archiving, marked_target, status=RecoveryRequest.Status.FAILED, worker_host=HOST,
                        work_directory=str(cluster.root), destination_name=cluster.name, error="reaped: gone")
    dead.save()
    newcluster.create_folders(cluster)
    base_extract.extract(backup, cluster.data, os_user=cluster.os_user, on_bytes=lambda done, total: None)
    port = pitr.free_port()
    passfile.write(archiving.cluster, cluster.name, "127.0.0.1", port)
    newcluster.write_settings(cluster, pitr.recovery_settings(cluster, port, archiving, marked_target), "test")
    newcluster.start(cluster)
    server = wait_for(lambda: postmaster_pid(cluster), message="the left-behind server to start")

    pitr.sweep_leftovers()
    assert not alive(server) and not cluster.root.exists() and not passfile.path_for(cluster.name).exists()
    assert AuditEvent.objects.get(action="recovery.pitr.cleanup", object_id=str(dead.pk)).details["server_was_running"]
