"""Status of the managed targets, sampled by the worker every minute (and on a DBA's "Check status now", queued to
the worker); pages and /health read the samples, never the clusters."""

from __future__ import annotations

from django.utils import timezone

from portal import audit, pg
from portal.models import SYSTEM_IDENTIFIER, ManagedCluster, PortalDatabaseServer, portal_system_identifier

SIZES = "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datallowconn"


def refresh(cluster: ManagedCluster, connect_timeout: int = 3) -> bool:
    """Connect, read version, recovery state and sizes; record them on the row. True when reachable. The server of
    the portal's own database is refused (recorded unreachable, with why)."""
    fields = ["reachable", "status_error", "checked_at", "system_identifier", "holds_portal_database"]
    try:
        with pg.connect(cluster.target(), purpose="status", connect_timeout=connect_timeout) as conn:
            cluster.system_identifier = str(conn.execute(SYSTEM_IDENTIFIER).fetchone()[0])
            cluster.holds_portal_database = cluster.system_identifier == portal_system_identifier()
            if cluster.holds_portal_database:
                raise PortalDatabaseServer(PortalDatabaseServer.__doc__)
            version = conn.execute("SHOW server_version").fetchone()[0]
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            sizes = dict(conn.execute(SIZES).fetchall())
            cluster.server_version_num = conn.info.server_version
    except Exception as exc:  # any failure to connect or query means "not reachable", with the reason
        cluster.reachable, cluster.status_error = False, str(exc).strip()[:2000]
    else:
        cluster.reachable, cluster.status_error = True, ""
        cluster.server_version, cluster.in_recovery = version.split()[0], in_recovery
        # pg_database_size() is NULL for a database dropped while it was being read.
        cluster.size_bytes = sum(size for size in sizes.values() if size is not None)
        fields += ["server_version", "server_version_num", "in_recovery", "size_bytes"]
        for database in cluster.databases.all():
            database.record_size(sizes.get(database.name))
    cluster.checked_at = timezone.now()
    cluster.save(update_fields=fields)
    return bool(cluster.reachable)


def refresh_all() -> int:
    """Check every cluster now; returns how many are reachable."""
    return sum(refresh(cluster) for cluster in ManagedCluster.objects.all())


def check_now(cluster: ManagedCluster, actor: str) -> bool:
    """A DBA's "Check status now", in the worker (the web server has no managed cluster's password): sampled at once,
    and recorded with who asked."""
    reachable = refresh(cluster)
    audit.record("cluster.check", actor=actor, obj=cluster, target=str(cluster),
                 outcome=audit.Outcome.SUCCESS if reachable else audit.Outcome.FAILURE,
                 details={"error": cluster.status_error})
    return reachable
