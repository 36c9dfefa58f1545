"""Tasks of the portal itself. Thin: each calls the domain code and nothing else."""

from __future__ import annotations

from django.conf import settings

from portal import anchors, jobs, logfiles, targets
from portal.models import ManagedCluster


def reap_dead_jobs() -> int:
    return jobs.reap_dead_jobs()


def refresh_targets() -> int:
    return targets.refresh_all()


def check_cluster(cluster_pk: int, actor: str) -> bool:
    return targets.check_now(ManagedCluster.objects.get(pk=cluster_pk), actor)


def anchor_audit_chain() -> int:
    return anchors.anchor("hourly").anchor.last_id


def rotate_log() -> bool:
    return logfiles.rotate(settings.LOG_FILE, settings.LOG_MAX_BYTES, settings.LOG_BACKUPS)
