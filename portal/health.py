"""Health of the portal database, the task cluster and every managed cluster, for /health and the dashboard.

Read from what is stored, never measured in the request: a managed cluster's status is the newest sample the
worker takes every minute (`portal.tasks.refresh_targets`), the WAL archives' likewise. Nothing here connects to a
managed cluster or writes a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.status import Stat

from portal.models import ManagedCluster

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Check:
    ok: bool
    detail: str = ""
    stale: bool = False  # the check's sample is too old to say anything (the detail says so)

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


def age_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


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
    """The cluster's newest status sample; older than STATUS_STALE_SECONDS, a failure: the worker stopped
    sampling, and the portal no longer knows."""
    if cluster.checked_at is None:
        return Check(False, "not sampled yet (is the task cluster running?)", stale=True)
    age = (timezone.now() - cluster.checked_at).total_seconds()
    if age > settings.STATUS_STALE_SECONDS:
        return Check(False, f"last sampled {age_text(age)} ago: the status is stale (is the task cluster "
                     "running?)", stale=True)
    if not cluster.reachable:
        return Check(False, cluster.status_error or "unreachable")
    recovery = ", in recovery" if cluster.in_recovery else ""
    return Check(True, f"PostgreSQL {cluster.server_version}{recovery}")


def clusters() -> dict[str, Check]:
    return {cluster.name: managed_cluster(cluster) for cluster in ManagedCluster.objects.all()}


Checks = Callable[[], dict[str, tuple[bool, str]]]

# The checks by name in /health's body, with the area the dashboard's Monitoring table shows them under. The apps
# register theirs (`register`, from their AppConfig.ready()): WAL archives, backup policies, drills...
GROUPS: dict[str, tuple[str, Callable[[], dict[str, Check]]]] = {"clusters": ("Clusters", clusters)}


def register(name: str, area: str, checks: Checks) -> None:
    """A group of checks: `checks()` answers {what: (ok, detail)} from what is stored, never by connecting to a
    managed cluster."""
    GROUPS[name] = (area, lambda: {label: Check(*state) for label, state in checks().items()})


def safely(name: str, checks: Callable[[], T], failed: Callable[[Check], T]) -> T:
    """A check that raises (a bug, a schedule croniter cannot read) fails, logged, instead of taking /health or
    the dashboard down with it."""
    try:
        return checks()
    except Exception:
        log.exception("health check %s raised", name)
        return failed(Check(False, "the check itself failed; see the portal's log"))


def group(name: str) -> dict[str, Check]:
    return safely(name, GROUPS[name][1], lambda check: {f"({name})": check})


def monitoring() -> list[tuple[str, str, Check]]:
    """The runbook's monitoring checks as (area, name, check), for the dashboard: the task queue, each WAL
    archive, scheduled backup policy and drill schedule (the clusters have their own table there)."""
    rows = [("Task queue", "django-q2", safely("task_cluster", task_cluster, lambda check: check))]
    for name, (area, _) in GROUPS.items():
        if name != "clusters":
            rows += [(area, label, check) for label, check in group(name).items()]
    return rows


def report() -> tuple[bool, dict[str, object]]:
    """(healthy, the details). Without the portal's own database nothing else can be read: that check alone."""
    database = portal_database()
    now = timezone.now().isoformat()
    if not database.ok:
        return False, {"status": "fail", "checked_at": now, "portal_database": database.as_json()}
    checks = {"portal_database": database, "task_cluster": safely("task_cluster", task_cluster, lambda c: c)}
    groups = {name: group(name) for name in GROUPS}
    healthy = all(c.ok for c in checks.values()) and all(c.ok for g in groups.values() for c in g.values())
    body = {
        "status": "ok" if healthy else "fail",
        "checked_at": now,
        **{name: check.as_json() for name, check in checks.items()},
        **{name: {label: check.as_json() for label, check in checks.items()} for name, checks in groups.items()},
    }
    return healthy, body
