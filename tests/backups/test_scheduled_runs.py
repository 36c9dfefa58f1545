"""A policy's schedule, come due, runs the backup in the real worker (`manage.py qcluster`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from backups.models import Backup
from backups.schedules import schedule_name
from tests.conftest import wait_for


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_due_schedule_runs_and_verifies_the_backup(logical_policy, backup_root, qcluster):
    schedule = Schedule.objects.get(name=schedule_name(logical_policy.pk))
    Schedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(seconds=1))

    # django-q2's scheduler looks at due schedules every 30 seconds.
    backup = wait_for(lambda: Backup.objects.filter(policy=logical_policy).first(), timeout=90,
                      message="the scheduled backup to be created")
    assert backup.triggered_by == f"schedule:{logical_policy.name}"
    done = wait_for(lambda: Backup.objects.filter(pk=backup.pk, finished__isnull=False).first(), timeout=120,
                    message="the scheduled backup to finish")
    assert (done.status, done.verification) == ("succeeded", "verified"), done.error
    assert done.local_path.is_relative_to(backup_root) and done.local_path.exists()
    schedule.refresh_from_db()
    assert schedule.next_run > timezone.now()  # the next one is at the policy's cron time again
    assert (schedule.next_run.hour, schedule.next_run.minute) == (2, 0)
