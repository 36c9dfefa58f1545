"""Every periodic schedule, kept in django-q2 `Schedule` rows from this one place.

`ensure()` creates, changes or removes one row by name, idempotently; the policy models of the apps
call it when they are saved or deleted, and the portal's own housekeeping is declared below.
"""

from __future__ import annotations

from datetime import datetime

from croniter import croniter
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import Schedule

SYSTEM_SCHEDULES = {
    "portal: reap dead jobs": ("portal.tasks.reap_dead_jobs", "* * * * *"),
    "portal: refresh target status": ("portal.tasks.refresh_targets", "*/5 * * * *"),
    # The audit chain's head, beside the backups, at least hourly (portal.anchors).
    "portal: anchor audit chain": ("portal.tasks.anchor_audit_chain", "7 * * * *"),
    # Hourly, away from the runbook's 01:00-03:00 backup starts: a backup kept because it was in use is
    # expired within the hour after its lease ends (each successful backup also runs its policy's retention).
    "backups: retention": ("backups.tasks.apply_retention", "45 * * * *"),
}


def validate_cron(expression: str) -> None:
    if not croniter.is_valid(expression) or len(expression.split()) != 5:
        raise ValidationError(
            f"“{expression}” is not a cron expression of five fields (minute hour day month weekday)."
        )


def ensure(name: str, func: str, cron: str, *, args: str = "", enabled: bool = True) -> Schedule | None:
    """Make the schedule called `name` run `func(args)` at `cron`, or remove it when not enabled."""
    if not enabled:
        Schedule.objects.filter(name=name).delete()
        return None
    validate_cron(cron)
    schedule = Schedule.objects.filter(name=name).first() or Schedule(name=name)
    if schedule.pk and (schedule.func, schedule.args, schedule.cron) == (func, args, cron):
        return schedule
    schedule.func, schedule.args, schedule.cron = func, args, cron
    schedule.schedule_type, schedule.repeats = Schedule.CRON, -1
    schedule.next_run = croniter(cron, timezone.localtime()).get_next(datetime)
    schedule.save()
    return schedule


def missed_twice(cron: str, since: datetime) -> bool:
    """Two runs of `cron` have come and gone since `since`: one late run is a delay, two are an alert."""
    runs = croniter(cron, timezone.localtime())
    runs.get_prev(datetime)
    return since < runs.get_prev(datetime)


def remove(name: str) -> None:
    Schedule.objects.filter(name=name).delete()


def sync_system_schedules() -> None:
    for name, (func, cron) in SYSTEM_SCHEDULES.items():
        ensure(name, func, cron)
