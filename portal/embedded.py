"""The embedded default: the project-local cluster started by `bin/pg-embedded`, and its registration."""

from __future__ import annotations

from django.conf import settings

from portal import pg
from portal.models import ManagedCluster, ManagedDatabase

CLUSTER_NAME = "embedded"


def target(dbname: str = "postgres") -> pg.Target:
    return pg.Target(
        host="127.0.0.1",
        port=settings.PG_PORT,
        user=settings.EMBEDDED_ADMIN_ROLE,
        dbname=dbname,
        passfile=settings.PGPASSFILE,
        major=settings.PG_DEFAULT_MAJOR,
    )


def register() -> ManagedCluster:
    """Register (or update) the embedded cluster and the sample database as managed targets."""
    cluster, _ = ManagedCluster.objects.update_or_create(
        name=CLUSTER_NAME,
        defaults={
            "host": "127.0.0.1",
            "port": settings.PG_PORT,
            "role": settings.EMBEDDED_ADMIN_ROLE,
            "passfile": settings.PGPASSFILE,
            "control": ManagedCluster.Control.PG_CTL,
            "data_directory": str(settings.EMBEDDED_PGDATA),
        },
    )
    ManagedDatabase.objects.get_or_create(
        cluster=cluster, name=settings.SAMPLE_DATABASE,
        defaults={"environment": ManagedDatabase.Environment.PRODUCTION},
    )
    cluster.refresh_status()
    return cluster
