"""Retention from the catalog, never from file times.

`plan(policy)` says, for every backup of the policy not yet expired, whether it is kept or expired and why.
`apply(policy, actor=...)` expires what the plan allows: it stamps `Backup.expired_at` (from then on nothing
uses the backup), then deletes its copy in every location, one audit event per deletion. A copy whose
deletion failed keeps its state and the error, and the next run tries again.

What is always kept:
- the newest `min_verified` backups that succeeded and were verified by restore, whatever their age
  (unverified, skipped, failed-verification and failed backups never count toward that minimum);
- anything younger than `retention_days`;
- a backup in use: one with a live lease (a verification, a restore, a copy, a download) or being verified;
- a backup still queued or running.

Failed and cancelled runs leave no file behind (their temporary files are removed when they fail). Their
catalog rows are history: they are kept like any other backup for `retention_days`, then stamped expired
(and any file a failed run did leave is deleted). Retention never deletes a catalog row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from backups import leases
from backups.models import Backup, BackupCopy, BackupPolicy
from backups.storage import offsite
from portal import audit

log = logging.getLogger(__name__)
ACTIVE = (Backup.Status.QUEUED, Backup.Status.RUNNING)


@dataclass
class Decision:
    backup: Backup
    keep: bool
    reason: str


@dataclass
class Plan:
    policy: BackupPolicy
    now: datetime
    decisions: list[Decision]

    @property
    def keep(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def expire(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def bytes_freed(self) -> int:
        return sum(d.backup.size_bytes or 0 for d in self.expire)


def counts_as_verified(backup: Backup) -> bool:
    return (backup.status == Backup.Status.SUCCEEDED and backup.verification == Backup.Verification.VERIFIED
            and backup.expired_at is None)


def plan(policy: BackupPolicy, now: datetime | None = None) -> Plan:
    now = now or timezone.now()
    backups = list(policy.backups.filter(expired_at__isnull=True).order_by("-created", "-pk"))
    minimum = [b.pk for b in backups if counts_as_verified(b)][: policy.min_verified]
    return Plan(policy, now, [decide(b, policy, now, minimum) for b in backups])


def _ago(backup: Backup, now: datetime) -> str:
    hours = int((now - backup.created).total_seconds() // 3600)
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def decide(backup: Backup, policy: BackupPolicy, now: datetime, minimum: list[int]) -> Decision:
    age = now - backup.created
    window = f"{policy.retention_days}-day retention"
    if backup.status in ACTIVE:
        return Decision(backup, True, f"{backup.get_status_display().lower()}: a backup in progress")
    if age <= timedelta(days=policy.retention_days):
        good = "" if backup.status == Backup.Status.SUCCEEDED else f" ({backup.status}: kept as history)"
        return Decision(backup, True, f"taken {_ago(backup, now)} ago, within the {window}{good}")
    if backup.pk in minimum:
        rank = minimum.index(backup.pk) + 1
        return Decision(backup, True, f"older than the {window}, but verified backup {rank} of the "
                                      f"{policy.min_verified} the policy always keeps")
    holders = leases.holders(backup)
    if holders:
        return Decision(backup, True, f"older than the {window}, but in use by {', '.join(holders)}")
    if backup.verification == Backup.Verification.VERIFYING:
        return Decision(backup, True, f"older than the {window}, but being verified")
    if backup.status != Backup.Status.SUCCEEDED:
        return Decision(backup, False, f"{backup.status} run taken {_ago(backup, now)} ago, beyond the {window}: "
                                       "its row stays as history, any leftover file is deleted")
    unverified = "" if backup.verification == Backup.Verification.VERIFIED else (
        f"; {backup.get_verification_display().lower()}, so it does not count toward the minimum")
    return Decision(backup, False, f"taken {_ago(backup, now)} ago, beyond the {window}{unverified}")


@dataclass
class Applied:
    policy: BackupPolicy
    expired: list[Decision] = field(default_factory=list)
    deleted: list[BackupCopy] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def apply(policy: BackupPolicy, *, actor: audit.Actor = None, now: datetime | None = None,
          only: set[int] | None = None) -> Applied:
    """Expire what the policy's plan allows (only the backups in `only`, when given: what a person saw in
    the preview), then delete their copies everywhere, and retry deletions that failed before."""
    result = Applied(policy)
    with transaction.atomic():
        # One retention run per policy at a time; the plan is made and stamped under this lock.
        BackupPolicy.objects.select_for_update().get(pk=policy.pk)
        current = plan(policy, now)
        for decision in current.expire:
            if (only is None or decision.backup.pk in only) and _stamp_expired(decision.backup, current.now):
                result.expired.append(decision)
    expired = [d.backup for d in result.expired]
    for decision in result.expired:
        audit.record("backup.expire", actor=actor, obj=decision.backup, target=str(decision.backup),
                     details={"policy": policy.name, "reason": decision.reason})
    leftovers = Backup.objects.filter(policy=policy, expired_at__isnull=False).exclude(
        pk__in=[b.pk for b in expired]).filter(copies__state__in=_UNDELETED).distinct()
    for backup in [*expired, *leftovers]:
        _delete_everywhere(backup, actor, result)
    return result


_UNDELETED = [BackupCopy.State.PENDING, BackupCopy.State.COPYING, BackupCopy.State.PRESENT, BackupCopy.State.FAILED]


def _stamp_expired(backup: Backup, now: datetime) -> bool:
    """Under the backup's row lock (which `leases.hold` takes too), check again that nothing uses it."""
    locked = Backup.objects.select_for_update().get(pk=backup.pk)
    if locked.expired_at is not None or locked.status in ACTIVE or leases.is_leased(locked):
        return False
    if locked.verification == Backup.Verification.VERIFYING:
        return False
    return Backup.objects.filter(pk=backup.pk).update(expired_at=now) == 1


def _delete_everywhere(backup: Backup, actor: audit.Actor, result: Applied) -> None:
    if backup.path and (backup.status == Backup.Status.SUCCEEDED or backup.local_path.exists()):
        offsite.record_primary(backup)
    for copy in backup.copies.filter(state__in=_UNDELETED).select_related("location", "backup"):
        if offsite.delete_copy(copy, actor=actor, reason="retention"):
            result.deleted.append(copy)
        else:
            copy.refresh_from_db()
            result.errors.append(f"{copy}: {copy.error}")


def apply_all(*, actor: audit.Actor = "schedule:retention") -> list[Applied]:
    """Every policy, each on its own: one policy's failure does not stop the others."""
    results = []
    for policy in BackupPolicy.objects.all():
        try:
            results.append(apply(policy, actor=actor))
        except Exception as exc:
            log.exception("retention of policy %s failed", policy)
            audit.record("retention.apply", actor=actor, obj=policy, target=str(policy),
                         outcome=audit.Outcome.FAILURE, details={"error": str(exc)})
    return results
