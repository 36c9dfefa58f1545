"""What a recovered cluster is checked for, what is recorded of it (RTO, RPO, facts), and its registration as a
managed cluster."""


from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from portal import audit, pg, targets
from portal.models import ManagedCluster, ManagedDatabase
from recovery import replay
from recovery.models import RecoveryRequest
from recovery.pitr.build import Build
from recovery.pitr.plan import STEP_REGISTER, STEP_VERIFY
from recovery.pitr.target import newest_archived_commit
from recovery.pitr.times import utc
from recovery.runbook import runbook_counts


def server_facts(build: Build) -> dict[str, object]:
    with pg.connect(build.target(), purpose="pitr-verify") as conn:
        in_recovery, wal_file = conn.execute(
            "SELECT pg_is_in_recovery(), pg_walfile_name(pg_current_wal_lsn())").fetchone()
        databases = dict(conn.execute("SELECT datname, pg_database_size(oid) FROM pg_database "
                                      "WHERE datallowconn AND NOT datistemplate ORDER BY datname").fetchall())
    if in_recovery:
        raise replay.ReplayFailed("the recovered server is still in recovery")
    return {"timeline": int(wal_file[:8], 16), "databases": databases}


def objectives(build: Build) -> None:
    """RTO: the first step's start to now (promoted and verified). RPO: the newest archived commit against
    the target."""
    first = build.request.steps.order_by("position").values_list("started", flat=True).first()
    build.request.rto_seconds = (timezone.now() - first).total_seconds() if first else None
    newest = newest_archived_commit(build.archive)
    build.request.rpo_seconds = max((newest - build.target_time).total_seconds(), 0.0) if newest else None
    build.facts.update({"rto_seconds": build.request.rto_seconds, "rpo_seconds": build.request.rpo_seconds,
                        "rto_objective_seconds": settings.RTO_OBJECTIVE_SECONDS,
                        "newest_archived_commit": utc(newest) if newest else None})


def record_reached(build: Build) -> None:
    reached, backup = build.reached, build.backup
    assert reached is not None and backup is not None and build.cluster is not None
    build.facts.update({
        "target": utc(build.target_time), "backup": backup.name, "backup_pk": backup.pk,
        "last_replayed_commit": utc(reached.last_commit) if reached.last_commit else None,
        "stopped_before_commit_at": utc(reached.stop_time) if reached.stop_time else None,
        "stopped_before_transaction": reached.stop_xid, "replay_lsn": reached.replay_lsn,
        "name": build.cluster.name, "port": build.port, "data_directory": str(build.cluster.data),
    })


def verify(build: Build) -> None:
    say = build.say(STEP_VERIFY)
    record_reached(build)
    build.facts.update(server_facts(build))
    say(f"reachable on 127.0.0.1:{build.port}, not in recovery, timeline {build.facts['timeline']}; databases: "
        + ", ".join(f"{name} ({size / 2**20:.0f} MB)" for name, size in build.facts["databases"].items()))
    for database in build.source.databases.filter(name__in=list(build.facts["databases"])):
        counts = runbook_counts(build.target(database.name))
        if counts:
            build.facts.setdefault("database_counts", {})[database.name] = counts
            say(f"{database.name}: " + ", ".join(f"{table} {count}" for table, count in counts.items()))
    objectives(build)
    save_outcome(build)


def save_outcome(build: Build) -> None:
    request = build.request
    request.verification = build.facts
    RecoveryRequest.objects.filter(pk=request.pk).update(
        verification=build.facts, rto_seconds=request.rto_seconds, rpo_seconds=request.rpo_seconds,
        target_time=build.target_time)


def register(build: Build) -> ManagedCluster:
    """The recovered cluster as a managed cluster the portal controls; the source's databases as staging."""
    assert build.cluster is not None
    source = build.source
    cluster = ManagedCluster.objects.create(
        name=build.cluster.name, host="127.0.0.1", port=build.port, role=source.role,
        passfile=str(build.passfile or ""), control=ManagedCluster.Control.PG_CTL,
        data_directory=str(build.cluster.data), os_user=source.os_user)
    for database in source.databases.filter(name__in=list(build.facts["databases"])):
        ManagedDatabase.objects.create(cluster=cluster, name=database.name,
                                       environment=ManagedDatabase.Environment.STAGING)
    targets.refresh(cluster)
    RecoveryRequest.objects.filter(pk=build.request.pk).update(result_cluster=cluster)
    build.request.result_cluster = cluster
    audit.record("recovery.pitr.register", actor=build.request.triggered_by or "system", obj=cluster,
                 target=str(cluster), details={"request": build.request.pk, "source": source.name,
                                               "port": build.port, "data_directory": cluster.data_directory})
    build.say(STEP_REGISTER)(f"registered as cluster {cluster.name} (127.0.0.1:{build.port}); its databases as "
                             "staging. Making it production is a separate request, approved by a second DBA.")
    return cluster
