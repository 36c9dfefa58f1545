"""Starting a backup: the row first (`queued`), then the work. One run per policy at a time: the database's
partial unique constraint decides, and a second request gets a clear `AlreadyRunning`."""

from __future__ import annotations

from functools import partial

from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from backups.models import Backup, BackupPolicy
from portal import audit
from portal.audit import Actor


class AlreadyRunning(Exception):
    def __init__(self, policy: BackupPolicy, active: Backup | None) -> None:
        self.policy, self.active = policy, active
        when = f" (backup #{active.pk}, {active.status} since {active.created:%Y-%m-%d %H:%M:%S} UTC)" if active else ""
        super().__init__(f"A backup of policy “{policy}” is already queued or running{when}: one run at a time.")


def create(policy: BackupPolicy, *, actor: Actor, via: str) -> Backup:
    """The `queued` row of a new backup of `policy`, and its audit event; AlreadyRunning if one is active."""
    triggered_by = audit.actor_name(actor)
    try:
        with transaction.atomic():
            backup = Backup.objects.create(policy=policy, kind=policy.kind, cluster=policy.cluster,
                                           database=policy.database, triggered_by=triggered_by)
    except IntegrityError as exc:
        active = policy.backups.filter(status__in=[Backup.Status.QUEUED, Backup.Status.RUNNING]).first()
        audit.record("backup.request", actor=actor, obj=policy, target=str(policy), outcome=audit.Outcome.DENIED,
                     details={"via": via, "reason": "already queued or running",
                              "active": active.pk if active else None})
        raise AlreadyRunning(policy, active) from exc
    audit.record("backup.request", actor=actor, obj=backup, target=str(policy), details={"via": via})
    return backup


def queue(policy: BackupPolicy, *, actor: Actor, via: str) -> Backup:
    """Create the row and hand the work to the task queue once the row is committed."""
    backup = create(policy, actor=actor, via=via)
    transaction.on_commit(partial(async_task, "backups.tasks.run_backup", backup.pk,
                                  task_name=f"backup {backup.pk}: {policy}"[:100]))
    return backup
