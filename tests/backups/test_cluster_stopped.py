"""The managed cluster stopped mid-backup: the run fails at once with the server's reason (the portal's own
database is elsewhere, so the worker can say so), and the policy can run again."""

from __future__ import annotations

import re

import pytest

from backups import runs
from backups.models import Backup, BackupPolicy
from backups.storage import locations
from portal import pg
from portal.embedded import sample
from portal.models import ManagedDatabase
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def started_pg_dump(backup: Backup) -> bool:
    backup.refresh_from_db()
    return bool(re.search(r"pg_dump started \(pid \d+\)", backup.log))


def finished(backup: Backup) -> Backup | None:
    backup.refresh_from_db()
    return backup if backup.is_finished else None


def test_a_backup_cut_off_by_its_cluster_stopping_fails_with_the_servers_reason(scratch_cluster, backup_root,
                                                                                 qcluster):
    sample.build(scratch_cluster.target("paws360"), 0.02)
    cluster = scratch_cluster.register("stopping")
    database = ManagedDatabase.objects.create(cluster=cluster, name="paws360")
    policy = BackupPolicy.objects.create(name="stopping full", kind="logical", cluster=cluster, database=database)
    blocker = pg.connect(database.target())
    blocker.execute("BEGIN")
    blocker.execute("LOCK TABLE paws360.courses IN ACCESS EXCLUSIVE MODE")  # pg_dump waits: it is mid-run
    backup = runs.queue(policy, actor="tester", via="test")
    wait_for(lambda: started_pg_dump(backup), timeout=60, message="pg_dump to start in the worker")

    scratch_cluster.stop()  # fast shutdown: every session, pg_dump's included, is ended by the server
    blocker.close()

    failed = wait_for(lambda: finished(backup), timeout=60, message="the backup to be recorded as finished")
    assert failed.status == Backup.Status.FAILED
    assert "terminating connection due to administrator command" in failed.error, failed.error
    left = [path for path in backup_root.rglob("*") if path.is_file() and path.name != locations.MARKER]
    assert left == [], "the cut-off run leaves nothing, under a final name or a temporary one"

    scratch_cluster.start()
    again = runs.queue(policy, actor="tester", via="test")  # not refused: the cut-off run is over
    done = wait_for(lambda: finished(again), timeout=120, message="the second run")
    assert done.status == Backup.Status.SUCCEEDED, done.error
