"""Retention from the catalog: what it keeps and why, what it expires from every location, and what it never
touches (the minimum of verified backups, a backup in use, a backup in progress)."""

from __future__ import annotations

import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from backups import leases, retention
from backups.models import Backup, BackupCopy, StorageLocation
from backups.storage import backends, offsite
from portal import pg, schedules
from portal.models import AuditEvent
from tests.backups.conftest import catalog, local_location
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db
V = Backup.Verification


def expired_pks(result: retention.Applied) -> set[int]:
    return {d.backup.pk for d in result.expired}


def decisions(policy) -> dict[int, retention.Decision]:
    return {d.backup.pk: d for d in retention.plan(policy).decisions}


def test_it_keeps_the_newest_min_verified_when_all_are_older_than_retention(policy):
    policy.min_verified = 2
    policy.save()
    v1 = catalog(policy, days_ago=50)
    v2 = catalog(policy, days_ago=45, source=v1)
    v3 = catalog(policy, days_ago=40, source=v1)
    unverified = catalog(policy, days_ago=35, verification=V.PENDING, source=v1)
    bad_verify = catalog(policy, days_ago=34, verification=V.FAILED, source=v1)
    failed_run = catalog(policy, days_ago=33, status=Backup.Status.FAILED, verification=V.PENDING)

    plan = decisions(policy)
    assert {pk for pk, d in plan.items() if d.keep} == {v2.pk, v3.pk}
    assert "verified backup 1 of the 2 the policy always keeps" in plan[v3.pk].reason
    assert "verified backup 2 of the 2" in plan[v2.pk].reason
    assert "does not count toward the minimum" in plan[unverified.pk].reason
    assert "failed run" in plan[failed_run.pk].reason and "history" in plan[failed_run.pk].reason

    result = retention.apply(policy, actor="test")
    assert expired_pks(result) == {v1.pk, unverified.pk, bad_verify.pk, failed_run.pk}
    assert v2.local_path.exists() and v3.local_path.exists()
    for gone in (v1, unverified, bad_verify):
        assert not gone.local_path.exists()
    failed_run.refresh_from_db()
    assert failed_run.expired_at is not None  # the row stays, as history
    # A second run finds nothing more: never below the minimum.
    assert retention.apply(policy, actor="test").expired == []
    assert Backup.objects.filter(policy=policy, expired_at__isnull=True).count() == 2


def test_young_verified_backups_count_toward_the_minimum(policy):
    policy.min_verified = 2
    policy.save()
    old = catalog(policy, days_ago=60)
    older_verified = catalog(policy, days_ago=40, source=old)
    young = catalog(policy, days_ago=1, source=old)
    result = retention.apply(policy, actor="test")
    assert expired_pks(result) == {old.pk}
    assert older_verified.local_path.exists() and young.local_path.exists()


def test_unverified_backups_never_count_so_old_verified_ones_stay(policy):
    policy.min_verified = 1
    policy.save()
    verified = catalog(policy, days_ago=90)
    for days in (31, 20, 2):
        catalog(policy, days_ago=days, verification=V.PENDING, source=verified)
    plan = decisions(policy)
    assert plan[verified.pk].keep
    assert [d.keep for d in retention.plan(policy).decisions] == [True, True, False, True]


def test_it_expires_from_every_location_with_an_audit_event_per_deletion(policy, s3_location, tmp_path: Path):
    second = local_location("second-disk", tmp_path / "second")
    policy.locations.set([StorageLocation.default_local(), second, s3_location])
    policy.min_verified = 1
    policy.save()
    keep = catalog(policy, days_ago=1)
    old = catalog(policy, days_ago=31, source=keep)
    offsite.copy_to_locations(old)
    assert old.copies.filter(state=BackupCopy.State.PRESENT).count() == 3

    result = retention.apply(policy, actor="dana_dba")
    assert expired_pks(result) == {old.pk} and result.errors == []
    assert set(old.copies.values_list("state", flat=True)) == {BackupCopy.State.DELETED}
    assert not old.local_path.exists() and not (tmp_path / "second" / old.path).exists()
    assert backends.for_location(s3_location).stat(old.path) is None
    old.refresh_from_db()
    assert old.expired_at is not None and not old.is_good
    deletions = AuditEvent.objects.filter(action="backup.copy.delete", object_id=str(old.pk))
    assert sorted(e.details["location"] for e in deletions) == ["local", "offsite", "second-disk"]
    assert {(e.actor, e.outcome) for e in deletions} == {("dana_dba", "success")}
    expiry = AuditEvent.objects.get(action="backup.expire", object_id=str(old.pk))
    assert "beyond the 30-day retention" in expiry.details["reason"]
    assert keep.local_path.exists()


def test_a_deletion_that_failed_is_retried_by_the_next_run(policy, tmpfs):
    disk = tmpfs("4m")
    second = local_location("second-disk", disk)
    policy.locations.set([StorageLocation.default_local(), second])
    policy.min_verified = 1
    policy.save()
    catalog(policy)
    old = catalog(policy, days_ago=40)
    offsite.copy_to_locations(old)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)  # its copy cannot be deleted now
    try:
        result = retention.apply(policy, actor="test")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    assert expired_pks(result) == {old.pk}
    assert len(result.errors) == 1 and "Read-only file system" in result.errors[0]
    stuck = old.copies.get(location=second)
    assert stuck.state == BackupCopy.State.PRESENT and "delete failed" in stuck.error
    assert (disk / old.path).exists()

    again = retention.apply(policy, actor="test")
    assert again.expired == [] and [c.pk for c in again.deleted] == [stuck.pk]
    assert not (disk / old.path).exists()


def test_it_never_expires_a_backup_in_progress_or_in_use(policy):
    policy.min_verified = 1
    policy.save()
    catalog(policy, days_ago=1)
    stuck = catalog(policy, days_ago=40, status=Backup.Status.RUNNING, verification=V.PENDING)
    verifying = catalog(policy, days_ago=41, verification=V.VERIFYING)
    plan = decisions(policy)
    assert plan[stuck.pk].keep and "in progress" in plan[stuck.pk].reason
    assert plan[verifying.pk].keep and "being verified" in plan[verifying.pk].reason
    assert retention.apply(policy).expired == []


@pytest.mark.django_db(transaction=True)
def test_a_retention_run_while_a_verification_reads_the_backup_keeps_it(policy, scratch_database):
    policy.min_verified = 1
    policy.save()
    catalog(policy, days_ago=1)
    old = catalog(policy, days_ago=40)
    leased, restoring, errors = threading.Event(), threading.Event(), []

    def verify() -> None:  # what verification does: hold a lease, restore the dump into a scratch database
        try:
            with leases.hold(old, "verification"):
                leased.set()
                pg.run("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error",
                                      f"--dbname={scratch_database.dbname}", str(old.local_path)],
                       target=scratch_database, timeout=300, on_start=lambda pid: restoring.set())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    reader = threading.Thread(target=verify)
    reader.start()
    assert leased.wait(30) and restoring.wait(30)
    plan = decisions(policy)
    result = retention.apply(policy, actor="test")
    restore_still_running = reader.is_alive()
    reader.join()

    assert restore_still_running, "pg_restore finished before retention ran: the test proved nothing"
    assert errors == []
    assert "in use by verification" in plan[old.pk].reason
    assert result.expired == []
    old.refresh_from_db()
    assert old.expired_at is None and old.local_path.exists()
    with pg.connect(scratch_database) as conn:
        assert conn.execute("SELECT count(*) FROM paws360.students").fetchone()[0] > 0

    later = retention.apply(policy, actor="test")  # the lease is gone: now it goes
    assert expired_pks(later) == {old.pk} and not old.local_path.exists()


def test_a_lease_cannot_be_taken_on_an_expired_backup(policy):
    policy.min_verified = 1
    policy.save()
    catalog(policy)
    old = catalog(policy, days_ago=40)
    retention.apply(policy)
    with pytest.raises(leases.BackupExpired), leases.hold(old, "verification"):
        pass


def test_apply_expires_only_what_the_person_saw_in_the_preview(policy):
    policy.min_verified = 1
    policy.save()
    catalog(policy)
    a = catalog(policy, days_ago=40)
    b = catalog(policy, days_ago=41, source=a)
    result = retention.apply(policy, actor="test", only={a.pk})
    assert expired_pks(result) == {a.pk}
    assert b.local_path.exists()


def test_retention_is_scheduled_hourly():
    schedules.sync_system_schedules()
    schedule = Schedule.objects.get(name="backups: retention")
    assert (schedule.func, schedule.cron) == ("backups.tasks.apply_retention", "45 * * * *")


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_task_expires_across_policies_with_the_worker_running(policy, tmp_path: Path, qcluster):
    # The worker is another process with its own BACKUP_ROOT: give the policy a location of its own.
    own = local_location("own-root", tmp_path / "own-root")
    policy.locations.set([own])
    policy.min_verified = 1
    policy.save()
    catalog(policy)
    old = catalog(policy, days_ago=40)
    assert old.local_path.is_relative_to(tmp_path / "own-root")
    schedules.sync_system_schedules()
    Schedule.objects.filter(name="backups: retention").update(next_run=timezone.now() - timedelta(seconds=1))

    wait_for(lambda: Backup.objects.filter(pk=old.pk, expired_at__isnull=False).exists(), timeout=60,
             message="the scheduled retention run")
    wait_for(lambda: not old.local_path.exists(), message="the expired backup's file to be deleted")
    event = AuditEvent.objects.get(action="backup.expire", object_id=str(old.pk))
    assert event.actor == "schedule:retention"
