"""Status of the managed targets, sampled by the worker every minute; pages and /health read the samples."""

from __future__ import annotations

from portal.models import ManagedCluster


def refresh_all() -> int:
    """Check every cluster now; returns how many are reachable."""
    return sum(cluster.refresh_status() for cluster in ManagedCluster.objects.all())
