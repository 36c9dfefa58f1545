"""Measured recovery objectives, against the runbook's: RTO < 4 hours, RPO < 15 minutes (settings
RTO_OBJECTIVE_SECONDS and RPO_OBJECTIVE_SECONDS).

RTO is measured from the start of a recovery's first step to the moment it is done: services healthy after a
complete restore that replaced production, the restored data verified otherwise (beside production, a drill),
the merge committed and checked for a single table.

RPO of a logical restore is what restoring that backup loses: the time from the backup's snapshot (the start of
the transaction pg_dump dumped, kept in its manifest; the backup's start for backups taken before the manifest
recorded it) to the moment the recovery was requested.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from backups.models import Backup
from recovery.models import RecoveryRequest


def rto_objective() -> float:
    return float(settings.RTO_OBJECTIVE_SECONDS)


def rpo_objective() -> float:
    return float(settings.RPO_OBJECTIVE_SECONDS)


def snapshot_time(backup: Backup) -> datetime:
    recorded = backup.manifest.get("snapshot_at")
    return parse_datetime(recorded) if recorded else (backup.started or backup.created)


def record_rpo(request: RecoveryRequest, backup: Backup) -> None:
    since = snapshot_time(backup)
    seconds = max(0.0, (request.created - since).total_seconds())
    request.rpo_seconds = seconds
    request.verification["rpo"] = {
        "seconds": seconds, "objective_seconds": rpo_objective(),
        "met": seconds <= rpo_objective(), "snapshot_at": since.isoformat(),
        "measured": "from the backup's snapshot to the request",
    }
    request.save(update_fields=["rpo_seconds", "verification"])


def record_rto(request: RecoveryRequest, first_started: datetime, until: str) -> float:
    seconds = (timezone.now() - first_started).total_seconds()
    request.rto_seconds = seconds
    request.verification["rto"] = {
        "seconds": seconds, "objective_seconds": rto_objective(),
        "met": seconds <= rto_objective(), "measured": f"from the first step to {until}",
    }
    request.save(update_fields=["rto_seconds", "verification"])
    return seconds
