"""The embedded default: the project-local clusters started by `bin/pg-embedded` — the portal's own (its
database), the managed one (the sample PAWS360 database) and the scratch one (where verification restores, logical
drills and single-table restores run: `portal.scratch`) — and the registration of the managed and scratch ones."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from django.conf import settings

from portal import pg, targets
from portal.models import ManagedCluster, ManagedDatabase

CLUSTER_NAME = "embedded"
SCRATCH_NAME = "embedded-scratch"  # SCRATCH_CLUSTER's default
SetupStep = Callable[[ManagedCluster, TextIO], None]  # the cluster, and where to say what was done

# What the apps set up on the embedded default's managed cluster once it is registered (`manage.py setup_embedded`),
# registered from their AppConfig.ready(): archiving and the runbook's backup policies, drill schedules...
SETUP_STEPS: list[SetupStep] = []


def register_setup(step: SetupStep) -> None:
    if step not in SETUP_STEPS:
        SETUP_STEPS.append(step)


def target(dbname: str = "postgres") -> pg.Target:
    """The managed cluster, as the role the portal manages it with."""
    return pg.Target(
        host="127.0.0.1",
        port=settings.EMBEDDED_PG_PORT,
        user=settings.EMBEDDED_ADMIN_ROLE,
        dbname=dbname,
        passfile=settings.EMBEDDED_PASSFILE,
        major=settings.PG_DEFAULT_MAJOR,
    )


def register() -> ManagedCluster:
    """Register (or update) the managed cluster and the sample database as managed targets."""
    cluster = _register_local(CLUSTER_NAME, settings.EMBEDDED_PG_PORT, settings.EMBEDDED_ADMIN_ROLE,
                              settings.EMBEDDED_PGDATA, scratch=False)
    ManagedDatabase.objects.get_or_create(
        cluster=cluster, name=settings.SAMPLE_DATABASE,
        defaults={"environment": ManagedDatabase.Environment.PRODUCTION},
    )
    targets.refresh(cluster)
    return cluster


def register_scratch() -> ManagedCluster:
    """Register (or update) the embedded scratch cluster as a managed cluster marked scratch; its status sampled."""
    cluster = _register_local(SCRATCH_NAME, settings.SCRATCH_PG_PORT, settings.SCRATCH_ADMIN_ROLE,
                              settings.SCRATCH_PGDATA, scratch=True)
    targets.refresh(cluster)
    return cluster


def _register_local(name: str, port: int, role: str, data: Path, *, scratch: bool) -> ManagedCluster:
    """One of bin/pg-embedded's clusters as a managed cluster the portal controls with pg_ctl."""
    cluster, _ = ManagedCluster.objects.update_or_create(name=name, defaults={
        "host": "127.0.0.1", "port": port, "role": role, "passfile": settings.EMBEDDED_PASSFILE,
        "control": ManagedCluster.Control.PG_CTL, "data_directory": str(data), "os_user": cluster_os_user(),
        "scratch": scratch,
    })
    return cluster


def cluster_os_user() -> str:
    """Who runs the embedded clusters: `postgres` when set up as root, else the user who set them up."""
    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def portal_superuser_sql(sql: str, dbname: str, *, capture: bool = False) -> str:
    """Run SQL as the superuser of the embedded portal cluster (peer authentication over its socket, as the
    cluster's OS user: root or that user only). The SQL travels on stdin."""
    superuser = pg.Target(host=str(settings.PORTAL_PG_SOCKET_DIR), port=settings.PORTAL_PG_PORT, user="postgres",
                          dbname=dbname)
    result = pg.run("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], target=superuser,
                    stdin=sql.encode(), capture_stdout=capture, run_as=cluster_os_user(), timeout=120)
    return result.stdout.decode() if capture else ""
