"""`bin/portal down` stops the servers the portal started beside production: recovered clusters and drill scratch
clusters (every running server in RECOVERY_ROOT/<name>/data). Clusters it did not start are listed, not stopped."""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal import audit
from portal.models import ManagedCluster
from recovery import newcluster


def started_here() -> list[newcluster.NewCluster]:
    """The running servers whose data directory is RECOVERY_ROOT/<name>/data."""
    root = Path(settings.RECOVERY_ROOT)
    found = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not (folder / "data").is_dir():
            continue
        cluster = newcluster.NewCluster(folder, pwd.getpwuid(folder.stat().st_uid).pw_name)
        if newcluster.postmaster_pid(cluster) is not None:
            found.append(cluster)
    return found


class Command(BaseCommand):
    help = "Stop the recovered and scratch clusters the portal started (RECOVERY_ROOT); list the others it leaves."

    def handle(self, *args: Any, **options: Any) -> None:
        failed = []
        for cluster in started_here():
            try:
                newcluster.stop(cluster)
            except (newcluster.BuildError, OSError) as exc:
                failed.append(f"{cluster.name}: {exc}")
                continue
            audit.record("cluster.stop", actor="system:portal-down", target=str(cluster.data),
                         details={"why": "bin/portal down"})
            self.stdout.write(f"stopped the recovered cluster {cluster.name} ({cluster.data})")
        recovered = str(Path(settings.RECOVERY_ROOT)) + "/"
        others = ManagedCluster.objects.filter(control=ManagedCluster.Control.PG_CTL).exclude(
            data_directory__startswith=recovered).exclude(
            data_directory__in=[str(settings.EMBEDDED_PGDATA), str(settings.SCRATCH_PGDATA)])  # bin/pg-embedded's
        for other in others:
            self.stdout.write(f"left alone: {other.name} ({other.data_directory}): not started by the portal")
        if failed:
            raise CommandError("; ".join(failed))
