"""Recovery tasks: thin, take a primary key, never run a destructive step twice (run_job claims the row)."""

from __future__ import annotations

from portal.jobs import run_job
from recovery import drills
from recovery.models import DrillSchedule, RecoveryRequest
from recovery.perform import perform


def run_recovery(pk: int) -> None:
    run_job(RecoveryRequest, pk, perform)


def run_scheduled_drill(schedule_pk: int) -> int | None:
    """A drill schedule fired: record the drill request, then run it. None when the same drill still runs."""
    schedule = DrillSchedule.objects.select_related("cluster").get(pk=schedule_pk)
    request = drills.queue(schedule, triggered_by=f"schedule:drill {schedule.pk}")
    if request is not None:
        run_recovery(request.pk)
    return request.pk if request else None
