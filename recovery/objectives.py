"""Measured recovery objectives, against the runbook's: RTO < 4 hours, RPO < 15 minutes.

RTO is measured from the start of a recovery's first step to the moment it is done: services healthy after a
complete restore that replaced production, the restored data verified otherwise (beside production, a drill),
the merge committed and checked for a single table.

RPO of a logical restore is what restoring that backup loses: the time from the backup's snapshot (the start of
the transaction pg_dump dumped, kept in its manifest; the backup's start for backups taken before the manifest
recorded it) to the moment the recovery was requested.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from backups.models import Backup
from recovery.models import RecoveryRequest

RTO_OBJECTIVE = timedelta(hours=4)
RPO_OBJECTIVE = timedelta(minutes=15)


def snapshot_time(backup: Backup) -> datetime:
    recorded = backup.manifest.get("snapshot_at")
    return parse_datetime(recorded) if recorded else (backup.started or backup.created)


def record_rpo(request: RecoveryRequest, backup: Backup) -> None:
    since = snapshot_time(backup)
    seconds = max(0.0, (request.created - since).total_seconds())
    request.rpo_seconds = seconds
    request.verification["rpo"] = {
        "seconds": seconds, "objective_seconds": RPO_OBJECTIVE.total_seconds(),
        "met": seconds <= RPO_OBJECTIVE.total_seconds(), "snapshot_at": since.isoformat(),
        "measured": "from the backup's snapshot to the request",
    }
    request.save(update_fields=["rpo_seconds", "verification"])


def record_rto(request: RecoveryRequest, first_started: datetime, until: str) -> float:
    seconds = (timezone.now() - first_started).total_seconds()
    request.rto_seconds = seconds
    request.verification["rto"] = {
        "seconds": seconds, "objective_seconds": RTO_OBJECTIVE.total_seconds(),
        "met": seconds <= RTO_OBJECTIVE.total_seconds(), "measured": f"from the first step to {until}",
    }
    request.save(update_fields=["rto_seconds", "verification"])
    return seconds
