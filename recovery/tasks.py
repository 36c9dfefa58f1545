"""Recovery tasks: thin, take a primary key, never run a destructive step twice (run_job claims the row)."""

from __future__ import annotations

from portal.jobs import run_job
from recovery.models import RecoveryRequest
from recovery.perform import perform


def run_recovery(pk: int) -> None:
    run_job(RecoveryRequest, pk, perform)
