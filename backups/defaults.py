"""The runbook's backup schedule as policies: what `bin/portal up` gives the embedded default.

Full logical backup daily at 02:00 kept 30 days, configuration at 02:30 kept 90 days, application data at
03:00 kept 30 days (when deployment configuration names its folders), and a daily physical base backup at
01:00 kept 7 days for point-in-time recovery. A kind that already has a policy for the target is left alone.
"""

from __future__ import annotations

from typing import TextIO

from django.conf import settings
from django.core.management import call_command

from backups import runs
from backups.models import BackupPolicy
from backups.storage import locations
from backups.wal import status
from portal import audit, embedded
from portal.models import ManagedCluster, ManagedDatabase

Kind = BackupPolicy.Kind
NAMES = {Kind.LOGICAL: "{db}: nightly full backup", Kind.CONFIG: "{cluster}: configuration",
         Kind.APPDATA: "{cluster}: application data", Kind.BASE: "{cluster}: daily base backup"}


def _ensure(kind: str, cluster: ManagedCluster, database: ManagedDatabase | None = None) -> BackupPolicy | None:
    """A new policy of `kind` for the target, or None when it has one already."""
    if BackupPolicy.objects.filter(kind=kind, cluster=cluster, database=database).exists():
        return None
    name = NAMES[kind].format(cluster=cluster.name, db=database.name if database else "")
    return BackupPolicy.objects.create(name=name, kind=kind, cluster=cluster, database=database,
                                       min_verified=1 if kind == Kind.BASE else 3)


def ensure_runbook_policies(database: ManagedDatabase) -> list[BackupPolicy]:
    """The runbook's policies for `database` and its cluster; returns the ones created now."""
    cluster = database.cluster
    wanted = [(Kind.BASE, None), (Kind.LOGICAL, database), (Kind.CONFIG, None)]
    if settings.BACKUP_APP_DATA_DIRS:
        wanted.append((Kind.APPDATA, None))
    created = [_ensure(kind, cluster, db) for kind, db in wanted]
    return [policy for policy in created if policy]


def first_runs(policies: list[BackupPolicy], actor: str) -> None:
    """Take a first backup of each new policy now, so the portal starts with something to show and restore."""
    for policy in policies:
        runs.queue(policy, actor=actor, via="setup")


def protect_embedded(cluster: ManagedCluster, out: TextIO) -> None:
    """The embedded default comes up with its scratch cluster registered (the first backups' verification restores
    there), its default location initialised, archiving its WAL (manage.py configure_archiving) and with the
    runbook's backup policies, each with a first backup queued."""
    scratch = embedded.register_scratch()
    state = "reachable" if scratch.reachable else f"UNREACHABLE: {scratch.status_error}"
    audit.record("cluster.register", actor="system:setup", obj=scratch, target=str(scratch),
                 details={"scratch": True, "reachable": scratch.reachable})
    out.write(f"scratch cluster '{scratch.name}' ({scratch.host}:{scratch.port}): {state}")
    out.write(locations.initialise_default(actor="system:setup"))
    call_command("configure_archiving", cluster.name, stdout=out)
    status.take_sample(cluster.wal_archive)
    created = ensure_runbook_policies(cluster.databases.get(name=settings.SAMPLE_DATABASE))
    first_runs(created, actor="system:setup")
    for policy in created:
        out.write(f"backup policy '{policy}': {policy.schedule}, kept {policy.retention_days} days")
