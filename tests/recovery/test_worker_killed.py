"""The worker killed (SIGKILL) while pg_restore runs: after the reaper, the request is failed, production is as it
was, the unfinished restored database is gone and the application services are running again."""

from __future__ import annotations

import os
import signal

import pytest

from backups.models import BackupPolicy
from portal import jobs
from portal.models import AuditEvent
from recovery import complete, services
from recovery.models import RecoveryRequest, RecoveryStep
from tests.backups.conftest import run_now
from tests.conftest import wait_for
from tests.recovery.conftest import database_names, query, submit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
def test_a_worker_killed_mid_restore_fails_the_request_and_leaves_production_running(
        larger_sample, backup_root, api, operator, dba, qcluster):
    paws360 = larger_sample
    policy = BackupPolicy.objects.create(name="paws360 full", kind="logical", cluster=paws360.cluster,
                                         database=paws360)
    assert run_now(policy).verification == "verified"
    query(paws360, "UPDATE paws360.students SET gpa = 0.00 WHERE id <= 100")
    damaged = query(paws360, "SELECT count(*), sum(gpa) FROM paws360.students")

    request = submit(paws360, operator, dba, destination=RecoveryRequest.Destination.REPLACE)  # queued on commit
    restoring = wait_for(lambda: RecoveryStep.objects.filter(request=request, name=complete.RESTORE,
                                                            log__contains="pg_restore started").first(),
                         timeout=120, message="pg_restore to start in the worker")
    request.refresh_from_db()
    assert not services.healthy(api.health_url), "the services are stopped while the backup is restored"
    os.kill(request.worker_pid, signal.SIGKILL)
    wait_for(lambda: jobs.process_start_ticks(request.worker_pid) is None, message="the worker to be gone")

    assert jobs.reap_dead_jobs() == 1

    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error == f"reaped: worker process {request.worker_pid} on {jobs.HOST} is gone"
    assert query(paws360, "SELECT count(*), sum(gpa) FROM paws360.students") == damaged, "production as it was"
    assert database_names(paws360) == {paws360.name}, "the unfinished restored database was dropped"
    assert services.healthy(api.health_url), "the services were started again"
    steps = {s.name: s for s in request.steps.all()}
    assert steps[complete.RESTORE].status == RecoveryStep.Status.FAILED and restoring.pk == steps[complete.RESTORE].pk
    assert steps[complete.SWAP].status == RecoveryStep.Status.SKIPPED
    assert steps[services.START_STEP].status == RecoveryStep.Status.SUCCEEDED
    assert "[clean-up] paws360-api started and healthy" in steps[services.START_STEP].log
    assert f"[clean-up] dropped {request.result_database}" in request.log
    cleanup = AuditEvent.objects.get(action="recovery.cleanup", object_id=str(request.pk))
    assert (cleanup.outcome, cleanup.details["problems"]) == ("success", [])
