"""Two portals on one host (a test run beside `bin/portal up`): job primary keys repeat between their databases,
so the reaper of one, after its worker was killed mid-backup, ends its own programs and never the other's."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from backups import runs
from portal import jobs, orphans, pg
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def started_pg_dump(backup) -> int:
    backup.refresh_from_db()
    match = re.search(r"pg_dump started \(pid (\d+)\)", backup.log)
    return int(match.group(1)) if match else 0


def other_portals_program(tag: str) -> subprocess.Popen:
    """A program of another portal instance on this host, started by its worker for the job with the same model
    and primary key as ours: the same tag but for the instance."""
    theirs = tag.replace(f"{os.environ['PORTAL_INSTANCE_ID']}@", "another-portal@", 1)
    assert theirs != tag
    return subprocess.Popen(["sleep", "300"], env={**os.environ, orphans.TAG: theirs}, start_new_session=True)


def test_the_reaper_ends_its_own_instances_programs_and_not_another_portals(logical_policy, backup_root, qcluster):
    with pg.connect(logical_policy.database.target()) as blocker, blocker.transaction():
        blocker.execute("LOCK TABLE paws360.courses IN ACCESS EXCLUSIVE MODE")  # pg_dump waits: mid-backup
        backup = runs.queue(logical_policy, actor="tester", via="test")
        ours = wait_for(lambda: started_pg_dump(backup), timeout=60, message="pg_dump to start in the worker")
        theirs = other_portals_program(orphans.tag_of(backup))
        try:
            backup.refresh_from_db()
            os.kill(backup.worker_pid, signal.SIGKILL)
            wait_for(lambda: jobs.process_start_ticks(backup.worker_pid) is None, message="the worker to be gone")

            assert jobs.reap_dead_jobs() == 1

            assert not jobs.alive(ours), "the reaper ended this portal's pg_dump"
            assert theirs.poll() is None, "the other portal's program lives on"
        finally:
            theirs.kill()
            theirs.wait()
