"""Every periodic schedule, kept in django-q2 `Schedule` rows from this one place.

`ensure()` creates, changes or removes one row by name, idempotently; the policy models of the apps
call it when they are saved or deleted, and the portal's own housekeeping is declared below.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from croniter import CroniterBadDateError, croniter
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import Schedule

SYSTEM_SCHEDULES = {
    "portal: reap dead jobs": ("portal.tasks.reap_dead_jobs", "* * * * *"),
    # /health, the dashboard and the admin read this sample: it is stale after STATUS_STALE_SECONDS.
    "portal: refresh target status": ("portal.tasks.refresh_targets", "* * * * *"),
    "portal: rotate the log file": ("portal.tasks.rotate_log", "* * * * *"),
    # The audit chain's head, beside the backups, at least hourly (portal.anchors).
    "portal: anchor audit chain": ("portal.tasks.anchor_audit_chain", "7 * * * *"),
    # Hourly, away from the runbook's 01:00-03:00 backup starts: a backup kept because it was in use is
    # expired within the hour after its lease ends (each successful backup also runs its policy's retention).
    "backups: retention": ("backups.tasks.apply_retention", "45 * * * *"),
}


# Far enough ahead to see every pattern of a five-field cron but its leap days.
HORIZON = timedelta(days=366)


def validate_cron(expression: str, min_minutes: int = 1, setting: str = "") -> None:
    """A cron expression of five fields that fires, never twice within `min_minutes` (the `setting` that says so
    is named in the error). The message does not repeat the expression: it may be anything a form was sent."""
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValidationError("This is not a cron expression of five fields (minute hour day month weekday).")
    try:
        gap = shortest_gap(expression, timedelta(minutes=min_minutes))
    except CroniterBadDateError:
        raise ValidationError("This schedule never fires: no date matches it (such as 31 February).") from None
    if gap is not None:
        allowed = f" ({setting})" if setting else ""
        raise ValidationError(f"This schedule fires {_minutes(gap)} after a previous run; it may fire at most once "
                              f"every {_minutes(timedelta(minutes=min_minutes))}{allowed}.")


def shortest_gap(expression: str, minimum: timedelta) -> timedelta | None:
    """The first interval between two runs within HORIZON that is shorter than `minimum`, or None. Raises
    `CroniterBadDateError` when the expression never fires.

    A cron's times of day are the same on every day it fires (its minute and hour fields do not depend on the
    day), so the first firing day is walked run by run, and after it only each day's last run against the next
    firing day's first: a few hundred steps for a year, however often the cron fires."""
    runs = croniter(expression, timezone.localtime())
    first = previous = runs.get_next(datetime)
    if minimum <= timedelta(minutes=1):
        return None  # no cron fires more often
    try:
        while (following := runs.get_next(datetime)).date() == previous.date():
            if following - previous < minimum:
                return following - previous
            previous = following
        while following - previous >= minimum and following < first + HORIZON:
            runs.set_current(datetime.combine(following.date() + timedelta(days=1), time(), following.tzinfo))
            previous = runs.get_prev(datetime)  # the day's last run
            following = runs.get_next(datetime)  # the next firing day's first
    except CroniterBadDateError:
        return None  # no further run within croniter's search: nothing shorter either
    return following - previous if following - previous < minimum else None


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    if hours and not rest:
        return f"{hours} h"
    return f"{hours} h {rest} min" if hours else f"{minutes} min"


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
