"""The worker killed (SIGKILL) mid-backup: the programs it started lead sessions of their own and outlive it,
still writing. The reaper fails the backup, ends them and removes what they had done: the dump's temporary folder,
the files already under their final names (the globals, a dump being verified), the verification's scratch
database on the scratch cluster. A failed run keeps no file."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from backups import runs, verify
from backups.kinds import logical as dump
from backups.models import Backup, BackupPolicy
from portal import jobs, pg
from portal.models import AuditEvent
from tests.backups.conftest import leftovers
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def started_pg_dump(backup: Backup) -> int:
    backup.refresh_from_db()
    match = re.search(r"pg_dump started \(pid (\d+)\)", backup.log)
    return int(match.group(1)) if match else 0


def stored(root: Path) -> list[str]:
    """Every file under the backup root's folder of logical backups, by name (temporary or final)."""
    return sorted(p.name for p in (root / "logical").rglob("*") if p.is_file())


def test_a_worker_killed_mid_dump_leaves_no_program_running_and_no_partial_file(
        logical_policy, backup_root, qcluster):
    with pg.connect(logical_policy.database.target()) as blocker, blocker.transaction():
        # pg_dump waits for this lock with its output folder open: it is mid-run for as long as the test needs.
        blocker.execute("LOCK TABLE paws360.courses IN ACCESS EXCLUSIVE MODE")
        backup = runs.queue(logical_policy, actor="tester", via="test")
        dump_pid = wait_for(lambda: started_pg_dump(backup), timeout=60, message="pg_dump to start in the worker")
        wait_for(lambda: leftovers(backup_root), message="pg_dump's temporary folder")
        backup.refresh_from_db()
        globals_file = dump.globals_name(backup)
        wait_for(lambda: globals_file in stored(backup_root), message="the globals under their final name")
        os.kill(backup.worker_pid, signal.SIGKILL)
        wait_for(lambda: jobs.process_start_ticks(backup.worker_pid) is None, message="the worker to be gone")
        assert jobs.alive(dump_pid), "pg_dump outlives the worker"

        assert jobs.reap_dead_jobs() == 1

        assert not jobs.alive(dump_pid), "the reaper ended pg_dump"
        assert leftovers(backup_root) == [] and stored(backup_root) == [], "nothing under a final name either"
        backup.refresh_from_db()
        assert backup.status == Backup.Status.FAILED and backup.error.startswith("reaped: worker process")
        reaped = AuditEvent.objects.get(action="backup.reaped", object_id=str(backup.pk))
        assert dump_pid in reaped.details["programs_ended"]
        cleanup = AuditEvent.objects.get(action="backup.cleanup", object_id=str(backup.pk))
        assert sorted(p.rsplit("/", 1)[1] for p in cleanup.details["removed"]) == sorted(
            [f".partial-{backup.name}", globals_file])


def scratch_databases(cluster, prefix: str = verify.SCRATCH_PREFIX) -> list[str]:
    with pg.connect(cluster.target()) as conn:
        return [name for (name,) in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                                 [prefix])]


def test_a_worker_killed_mid_verification_leaves_no_scratch_database(larger_sample, embedded_scratch, backup_root,
                                                                     qcluster):
    policy = BackupPolicy.objects.create(name="paws360 full", kind="logical", cluster=larger_sample.cluster,
                                         database=larger_sample)
    backup = runs.queue(policy, actor="tester", via="test")
    mine = verify.scratch_prefix(backup)
    (scratch,) = wait_for(lambda: scratch_databases(embedded_scratch, mine), timeout=120, interval=0.05,
                          message="the verification's scratch database on the scratch cluster")
    backup.refresh_from_db()
    os.kill(backup.worker_pid, signal.SIGKILL)  # pg_restore into the scratch database takes seconds here
    wait_for(lambda: jobs.process_start_ticks(backup.worker_pid) is None, message="the worker to be gone")
    assert scratch_databases(embedded_scratch, mine) == [scratch], "the dead verification's scratch database is left"
    assert scratch_databases(larger_sample.cluster) == [], "nothing of the verification is on production"
    finished = [backup.name, dump.globals_name(backup)]
    assert (backup.local_path / "toc.dat").is_file() and backup.local_path.with_name(finished[1]).is_file(), \
        "the dump being verified and its globals are under their final names"

    assert jobs.reap_dead_jobs() == 1

    assert scratch_databases(embedded_scratch, mine) == [], "the reaper dropped it from the scratch cluster"
    assert stored(backup_root) == [] and leftovers(backup_root) == [], "the failed run keeps no file"
    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED and backup.verification != Backup.Verification.VERIFIED
    cleanup = AuditEvent.objects.get(action="backup.cleanup", object_id=str(backup.pk))
    assert cleanup.details["dropped"] == [scratch]
    assert sorted(p.rsplit("/", 1)[1] for p in cleanup.details["removed"]) == sorted(finished)
