"""Claiming a job once, and reaping the rows of workers that died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from backups.models import Backup, BackupPolicy
from portal import jobs
from portal.models import AuditEvent
from tests.conftest import wait_for

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queued_backup(embedded_cluster) -> Backup:
    policy = BackupPolicy.objects.create(name="config", kind=BackupPolicy.Kind.CONFIG, cluster=embedded_cluster,
                                         retention_days=90)
    return Backup.objects.create(policy=policy, kind=policy.kind, cluster=embedded_cluster)


def test_a_job_is_claimed_once(queued_backup):
    first = Backup.claim(queued_backup.pk)
    assert first is not None and first.status == Backup.Status.RUNNING
    assert first.worker_pid == os.getpid()
    assert Backup.claim(queued_backup.pk) is None


def test_run_job_does_nothing_for_a_second_delivery(queued_backup):
    calls = []
    jobs.run_job(Backup, queued_backup.pk, lambda job, reporter: calls.append(job.pk))
    jobs.run_job(Backup, queued_backup.pk, lambda job, reporter: calls.append(job.pk))
    assert calls == [queued_backup.pk]
    queued_backup.refresh_from_db()
    assert queued_backup.status == Backup.Status.SUCCEEDED


def test_run_job_records_the_failure_and_its_reason(queued_backup):
    def fails(job, reporter):
        reporter.log("about to fail")
        raise RuntimeError("disk on fire")

    jobs.run_job(Backup, queued_backup.pk, fails)
    queued_backup.refresh_from_db()
    assert (queued_backup.status, queued_backup.error) == (Backup.Status.FAILED, "disk on fire")
    assert "about to fail" in queued_backup.log
    finish = AuditEvent.objects.get(action="backup.finish", object_id=str(queued_backup.pk))
    assert (finish.outcome, finish.details["error"]) == ("failure", "disk on fire")


CLAIM_AND_HANG = """
from backups.models import Backup
import sys, time
assert Backup.claim(int(sys.argv[1])) is not None
print("claimed", flush=True)
time.sleep(300)
"""


@pytest.mark.django_db(transaction=True)
def test_the_reaper_fails_the_row_of_a_killed_worker(queued_backup):
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    worker = subprocess.Popen([sys.executable, "-c", "import django; django.setup(); exec(open(0).read())",
                               str(queued_backup.pk)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              cwd=PROJECT, env=env, text=True)
    worker.stdin.write(CLAIM_AND_HANG.replace("sys.argv[1]", str(queued_backup.pk)))
    worker.stdin.close()
    assert worker.stdout.readline().strip() == "claimed"
    assert jobs.reap_dead_jobs() == 0  # alive: left alone

    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert jobs.reap_dead_jobs() == 1
    queued_backup.refresh_from_db()
    assert queued_backup.status == Backup.Status.FAILED
    assert queued_backup.error == f"reaped: worker process {worker.pid} on {jobs.HOST} is gone"
    wait_for(lambda: AuditEvent.objects.filter(action="backup.reaped").exists(), timeout=2)
