"""Health of the portal database, the task cluster and every managed cluster, for /health."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.status import Stat

from portal.models import ManagedCluster


@dataclass
class Check:
    ok: bool
    detail: str = ""


def portal_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return Check(False, f"portal database unreachable: {exc}")
    return Check(True, "ok")


def task_cluster() -> Check:
    try:
        stats = Stat.get_all(get_broker())
    except Exception as exc:
        return Check(False, f"cannot read task cluster state: {exc}")
    running = [s for s in stats if s.status != Conf.STOPPED]
    if not running:
        return Check(False, "no django-q2 cluster is running (start it: manage.py qcluster)")
    workers = sum(len(s.workers) for s in running)
    return Check(True, f"{len(running)} cluster(s), {workers} worker(s)")


def managed_cluster(cluster: ManagedCluster) -> Check:
    if cluster.refresh_status():
        recovery = ", in recovery" if cluster.in_recovery else ""
        return Check(True, f"PostgreSQL {cluster.server_version}{recovery}")
    return Check(False, cluster.status_error or "unreachable")


def wal_archives() -> dict[str, Check]:
    """Each cluster's WAL archive, from its newest sample (the backups app samples every minute)."""
    from backups.models import WalArchive
    from backups.walstatus import health

    return {a.cluster.name: Check(*health(a)) for a in WalArchive.objects.select_related("cluster")}


def backups() -> dict[str, Check]:
    """Each scheduled backup policy: its newest run good, and no two scheduled runs missed."""
    from backups.freshness import health

    return {name: Check(*state) for name, state in health().items()}


def drills() -> dict[str, Check]:
    """The newest restore drill of each drill schedule: a failed or overdue drill fails the check."""
    from recovery.drills import health

    return {name: Check(*state) for name, state in health().items()}


def monitoring() -> list[tuple[str, str, Check]]:
    """The runbook's monitoring checks as (area, name, check), for the dashboard: the task queue, each WAL
    archive, scheduled backup policy and drill schedule (the clusters have their own table there)."""
    rows = [("Task queue", "django-q2", task_cluster())]
    for area, checks in (("WAL archive", wal_archives()), ("Backups", backups()), ("Drills", drills())):
        rows += [(area, name, check) for name, check in checks.items()]
    return rows


def report() -> tuple[bool, dict[str, object]]:
    checks = {"portal_database": portal_database(), "task_cluster": task_cluster()}
    clusters = {c.name: managed_cluster(c) for c in ManagedCluster.objects.all()}
    archives = wal_archives()
    policies = backups()
    drill_checks = drills()
    healthy = all(c.ok for c in checks.values()) and all(
        c.ok for c in [*clusters.values(), *archives.values(), *policies.values(), *drill_checks.values()])
    body = {
        "status": "ok" if healthy else "fail",
        "checked_at": timezone.now().isoformat(),
        **{name: asdict(check) for name, check in checks.items()},
        "clusters": {name: asdict(check) for name, check in clusters.items()},
        "wal_archives": {name: asdict(check) for name, check in archives.items()},
        "backups": {name: asdict(check) for name, check in policies.items()},
        "drills": {name: asdict(check) for name, check in drill_checks.items()},
    }
    return healthy, body
