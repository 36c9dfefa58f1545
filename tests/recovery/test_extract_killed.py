"""The worker killed (SIGKILL) while GNU tar extracts a base backup for a point-in-time recovery (a real
`manage.py qcluster`): tar, started through the runner as the cluster's OS user, carries the job's tag (its own user
switch used to drop it, and the reaper could not find it), and the reaper ends it, fails the request and removes the
half-built cluster."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from backups.models import Backup
from portal import jobs
from portal.models import AuditEvent
from recovery import approvals
from recovery.models import RecoveryRequest
from tests.backups.test_age_killed import programs_of
from tests.conftest import wait_for
from tests.recovery.pitr_fixtures import pitr_request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_env(monkeypatch, recovery_root: Path) -> None:
    monkeypatch.setenv("RECOVERY_ROOT", str(recovery_root / "clusters"))
    monkeypatch.setenv("RECOVERY_PASSFILE_DIR", str(recovery_root / "secrets"))


@pytest.fixture
def worker(worker_env: None, qcluster):
    """The qcluster, building its clusters in the test's RECOVERY_ROOT."""
    return qcluster


@contextmanager
def held_halfway(path: Path) -> Iterator[threading.Event]:
    """`path` replaced by a named pipe that gives the first half of its bytes, then holds: whoever reads it is held
    mid-file, for as long as the block runs. The event is set once that half was taken."""
    content = memoryview(path.read_bytes())[: path.stat().st_size // 2]
    path.unlink()
    os.mkfifo(path)
    half_taken, release = threading.Event(), threading.Event()

    def give() -> None:
        with suppress(BrokenPipeError), open(path, "wb", buffering=0) as pipe:
            left = content
            while left:
                left = left[pipe.write(left):]
            half_taken.set()
            release.wait(300)

    thread = threading.Thread(target=give, daemon=True)
    thread.start()
    try:
        yield half_taken
    finally:
        release.set()
        with suppress(OSError):  # a writer still waiting for its reader: let it open, and end
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(timeout=30)


def test_a_worker_killed_mid_extraction_has_its_tar_ended_by_the_reaper(archiving, marked_target, recovery_root, dba,
                                                                        worker):
    backup = Backup.objects.get(cluster=archiving.cluster)
    with held_halfway(backup.local_path / "pg_wal.tar") as half_taken:  # extracted after base.tar.zst
        request = approvals.submit(pitr_request(archiving, marked_target), dba)
        wait_for(half_taken.is_set, timeout=120, message="the worker to extract half of pg_wal.tar")
        request.refresh_from_db()
        (tar,) = wait_for(lambda: programs_of(request, "tar"), message="tar, carrying the job's tag")
        assert Path(f"/proc/{tar}").owner() == archiving.cluster.os_user, "run as the cluster's OS user"
        # Stopped, as a tar stuck on a hung disk would be: running, it would see its input end with the worker and
        # exit by itself, and this test would prove nothing about the reaper.
        os.kill(tar, signal.SIGSTOP)
        os.kill(request.worker_pid, signal.SIGKILL)
        wait_for(lambda: jobs.process_start_ticks(request.worker_pid) is None, message="the worker to be gone")
        assert jobs.alive(tar), "tar outlives the worker"

        assert jobs.reap_dead_jobs() == 1

        assert not jobs.alive(tar), "the reaper ended tar"
    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.FAILED and request.error.startswith("reaped: worker process")
    reaped = AuditEvent.objects.get(action="recovery.reaped", object_id=str(request.pk))
    assert tar in reaped.details["programs_ended"]
    assert request.work_directory and not Path(request.work_directory).exists(), "the half-built cluster is gone"
    assert AuditEvent.objects.filter(action="recovery.pitr.cleanup", object_id=str(request.pk)).exists()
