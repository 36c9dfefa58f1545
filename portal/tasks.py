"""Tasks of the portal itself. Thin: each calls the domain code and nothing else."""

from __future__ import annotations

from django.conf import settings

from portal import anchors, jobs, logfiles, targets


def reap_dead_jobs() -> int:
    return jobs.reap_dead_jobs()


def refresh_targets() -> int:
    return targets.refresh_all()


def anchor_audit_chain() -> int:
    return anchors.anchor("hourly").anchor.last_id


def rotate_log() -> bool:
    return logfiles.rotate(settings.LOG_FILE, settings.LOG_MAX_BYTES, settings.LOG_BACKUPS)
