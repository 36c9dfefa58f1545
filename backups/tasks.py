"""Tasks of the backup catalogue. Thin: a primary key in, the domain code called, nothing else."""

from __future__ import annotations

import logging

from backups import pipeline, runs
from backups.models import Backup, BackupPolicy
from portal.jobs import run_job

log = logging.getLogger(__name__)


def run_backup(backup_pk: int) -> str | None:
    backup = run_job(Backup, backup_pk, pipeline.perform)
    return backup.status if backup else None


def scheduled_backup(policy_pk: int) -> str | None:
    """A policy's schedule came due: create the row as "Run now" does, and run it in this worker."""
    policy = BackupPolicy.objects.get(pk=policy_pk)
    try:
        backup = runs.create(policy, actor=f"schedule:{policy.name}", via="schedule")
    except runs.AlreadyRunning as exc:
        log.warning("%s", exc)
        return "skipped: already running"
    return run_backup(backup.pk)
