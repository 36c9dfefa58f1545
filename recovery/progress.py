"""What a recovery's page shows live: the progress bar (the shared one, portal/progress.py) and the step list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal.progress import job_progress
from recovery.models import RecoveryRequest, RecoveryStep


def duration(value: timedelta | float | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"


def step_data(step: RecoveryStep) -> dict[str, Any]:
    return {"position": step.position, "name": step.name, "status": step.status,
            "status_display": step.get_status_display(), "duration": duration(step.duration),
            "log": step.log, "error": step.error}


def label(request: RecoveryRequest, steps: list[RecoveryStep], percent: int | None) -> str:
    if request.status == RecoveryRequest.Status.REQUESTED:
        return "awaiting a second DBA's approval"
    if request.status == RecoveryRequest.Status.QUEUED:
        return "queued"
    if request.is_finished:
        rto = f" · RTO {duration(request.rto_seconds)}" if request.rto_seconds is not None else ""
        return f"{request.get_status_display()}{rto}"
    running = next((s for s in steps if s.status == RecoveryStep.Status.RUNNING), None)
    where = f"step {running.position} of {len(steps)}: {running.name}" if running else "starting"
    return where + (f" ({percent}%)" if percent is not None else "")


def progress_data(request: RecoveryRequest) -> dict[str, Any]:
    steps = list(request.steps.all())
    percent = request.percent
    if request.is_finished:
        percent = 100
    elif request.status in (RecoveryRequest.Status.REQUESTED, RecoveryRequest.Status.QUEUED):
        percent = 0  # waiting, not working
    return job_progress(request, label(request, steps, percent), percent) | {
        "steps": [step_data(step) for step in steps],
        "rto": duration(request.rto_seconds),
    }
