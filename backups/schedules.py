"""Backup policies' django-q2 schedules, kept in step with the policies from here (and nowhere else).

A policy saved creates or changes its `Schedule` row; disabled or deleted, the row goes. The rows are named
by the policy's primary key, so renaming a policy keeps its one schedule.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from backups.models import BackupPolicy
from portal import schedules

TASK = "backups.tasks.scheduled_backup"


def schedule_name(policy_pk: int) -> str:
    return f"backup policy {policy_pk}"


def sync(policy: BackupPolicy) -> None:
    schedules.ensure(schedule_name(policy.pk), TASK, policy.schedule, args=str(policy.pk), enabled=policy.enabled)


def remove(policy_pk: int) -> None:
    schedules.remove(schedule_name(policy_pk))


def sync_all() -> None:
    for policy in BackupPolicy.objects.all():
        sync(policy)


def _saved(sender: type[BackupPolicy], instance: BackupPolicy, **kwargs: Any) -> None:
    sync(instance)


def _deleted(sender: type[BackupPolicy], instance: BackupPolicy, **kwargs: Any) -> None:
    remove(instance.pk)


def connect() -> None:
    post_save.connect(_saved, sender=BackupPolicy, dispatch_uid="backups.schedules.saved")
    post_delete.connect(_deleted, sender=BackupPolicy, dispatch_uid="backups.schedules.deleted")
