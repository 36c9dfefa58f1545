"""Live status of the managed targets."""

from __future__ import annotations

from datetime import timedelta

from portal.models import ManagedCluster


def refresh_all() -> int:
    """Check every cluster now; returns how many are reachable."""
    return sum(cluster.refresh_status() for cluster in ManagedCluster.objects.all())


def refresh_stale(max_age: timedelta = timedelta(seconds=30)) -> None:
    for cluster in ManagedCluster.objects.all():
        if cluster.status_is_stale(max_age):
            cluster.refresh_status()
