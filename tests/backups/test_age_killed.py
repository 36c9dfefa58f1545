"""The worker killed (SIGKILL) mid-way through an encrypted backup: age, started through the runner, carries the job's
tag, and the reaper ends it with pg_dump; the failed run keeps no file."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from backups import runs
from backups.kinds import logical as dump
from backups.models import Backup, BackupPolicy
from portal import jobs, orphans, pg
from portal.models import AuditEvent
from tests.backups.conftest import leftovers
from tests.backups.test_worker_killed import started_pg_dump, stored
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def programs_of(job: jobs.Job, name: str) -> list[int]:
    """The running processes that carry the job's tag (what the reaper looks for) and run `name`."""
    found = []
    for pid in orphans.carrying(orphans.tag_of(job)):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if Path(argv0).name == name:
            found.append(pid)
    return found


def test_a_worker_killed_mid_encrypted_dump_has_its_age_ended_by_the_reaper(logical_policy, age_keys, backup_root,
                                                                             qcluster):
    logical_policy.encrypt, logical_policy.dump_format = True, BackupPolicy.DumpFormat.CUSTOM
    logical_policy.save()
    with pg.connect(logical_policy.database.target()) as blocker, blocker.transaction():
        # pg_dump waits for this lock with age started and the stream open: mid-run for as long as the test needs.
        blocker.execute("LOCK TABLE paws360.courses IN ACCESS EXCLUSIVE MODE")
        backup = runs.queue(logical_policy, actor="tester", via="test")
        dump_pid = wait_for(lambda: started_pg_dump(backup), timeout=60, message="pg_dump to start in the worker")
        backup.refresh_from_db()
        globals_file = dump.globals_name(backup)  # encrypted by an age of its own, gone once the file is whole
        wait_for(lambda: globals_file in stored(backup_root), message="the globals under their final name")
        (age,) = wait_for(lambda: programs_of(backup, "age"), message="age, carrying the job's tag")
        # Stopped, as an age stuck on a hung disk would be: running, it would see its input end with the worker and
        # exit by itself, and this test would prove nothing about the reaper.
        os.kill(age, signal.SIGSTOP)
        os.kill(backup.worker_pid, signal.SIGKILL)
        wait_for(lambda: jobs.process_start_ticks(backup.worker_pid) is None, message="the worker to be gone")
        assert jobs.alive(age) and jobs.alive(dump_pid), "age and pg_dump outlive the worker"

        assert jobs.reap_dead_jobs() == 1

        assert not jobs.alive(age) and not jobs.alive(dump_pid), "the reaper ended both"
    reaped = AuditEvent.objects.get(action="backup.reaped", object_id=str(backup.pk))
    assert {age, dump_pid} <= set(reaped.details["programs_ended"])
    assert leftovers(backup_root) == [] and stored(backup_root) == [], "the failed run keeps no file"
    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED and backup.error.startswith("reaped: worker process")
