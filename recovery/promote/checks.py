"""What is refused, when the request is made and again when it runs: clusters that are not local, not the same
major version or OS user, on another file system, a backup running on either; and the checks before anything
stops."""


from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from django.core.exceptions import ValidationError
from django.db.models import Q

from backups.models import Backup
from portal import targets
from portal.models import ManagedCluster
from recovery.approvals import Refused
from recovery.datadirs import (
    pitr_block,
    same_file_system,
)
from recovery.models import ACTIVE_STATES, RecoveryRequest
from recovery.promote.swap import Swap, facts, save_state
from recovery.runbook import runbook_counts

Say = Callable[[str], None]

def clusters_of(request: RecoveryRequest) -> tuple[ManagedCluster, ManagedCluster]:
    """(production, recovered), or Refused with the reason."""
    pitr = request.source_recovery
    if pitr is None:
        raise Refused("name the point-in-time recovery whose cluster should become production")
    if pitr.kind != RecoveryRequest.Kind.PITR:
        raise Refused(f"{pitr} is not a point-in-time recovery")
    if pitr.status != RecoveryRequest.Status.SUCCEEDED:
        raise Refused(f"{pitr} did not succeed ({pitr.get_status_display().lower()}): only a recovered, verified "
                      "cluster can become production")
    recovered = pitr.result_cluster
    if recovered is None:
        raise Refused(f"{pitr} left no registered cluster")
    production = request.cluster
    if pitr.cluster_id != production.pk:
        raise Refused(f"{recovered} was recovered from {pitr.cluster}, not from {production}")
    for cluster, what in ((production, "production"), (recovered, "the recovered cluster")):
        if not (cluster.is_local and cluster.data_directory and cluster.os_user):
            raise Refused(f"{what} ({cluster}) is not a local cluster the portal controls (pg_ctl control, data "
                          "directory and OS user): swapping data directories is done only there"
                          + (f" — {cluster.status_error}" if cluster.status_error else ""))
    if production.major is None or production.major != recovered.major:
        raise Refused(f"major versions differ: {production} is {production.major}, {recovered} {recovered.major}")
    if production.os_user != recovered.os_user:
        raise Refused(f"{production} belongs to {production.os_user}, {recovered} to {recovered.os_user}")
    busy = (RecoveryRequest.objects.filter(Q(cluster=production) | Q(cluster=recovered), status__in=ACTIVE_STATES)
            .exclude(pk=request.pk).first())
    if busy is not None:
        raise Refused(f"{busy} is active on {busy.cluster}: one recovery at a time")
    check_places(production, recovered)
    return production, recovered


def check_places(production: ManagedCluster, recovered: ManagedCluster) -> None:
    data, moving = Path(production.data_directory), Path(recovered.data_directory)
    for path in (data, moving):
        if not path.is_dir():
            raise Refused(f"{path} is not there")
    if not same_file_system(data.parent, moving):
        raise Refused(f"{moving} and {data} are on different file systems: the portal moves data directories by "
                      "renaming them, never by copying student records; move RECOVERY_ROOT to production's file "
                      "system or swap them by hand")


def validate_request(request: RecoveryRequest) -> None:
    """A promotion's checks (`recovery.validation`, when it is submitted): the refusal as a form error, and the
    recovered cluster running now."""
    try:
        _production, recovered = clusters_of(request)
    except Refused as exc:
        raise ValidationError({"source_recovery": str(exc)}) from exc
    if not targets.refresh(recovered):
        raise ValidationError({"source_recovery": f"{recovered} is not running: {recovered.status_error}"})


def no_backup_running(*clusters: ManagedCluster) -> None:
    """Refused while a backup of either cluster is queued or running: stopping its server would fail it. From
    the moment the promotion runs, `backups_held` keeps new ones from starting."""
    busy = Backup.objects.filter(cluster__in=clusters, status__in=[Backup.Status.QUEUED, Backup.Status.RUNNING])
    if (backup := busy.select_related("cluster").first()) is not None:
        raise Refused(f"backup {backup} of {backup.cluster} is {backup.status}: stopping the server would break it; "
                      "run the promotion again once it has finished")


def backups_held(backup: Backup) -> str:
    """For backups.pipeline.HOLDS: no backup of a cluster whose data directory a promotion is swapping."""
    swapping = RecoveryRequest.objects.filter(
        Q(cluster=backup.cluster) | Q(source_recovery__result_cluster=backup.cluster),
        kind=RecoveryRequest.Kind.PROMOTE, status=RecoveryRequest.Status.RUNNING).first()
    return f"{swapping} is swapping {backup.cluster}'s data directory" if swapping else ""




def check(request: RecoveryRequest, say: Say) -> tuple[ManagedCluster, ManagedCluster, Swap]:
    production, recovered = clusters_of(request)
    no_backup_running(production, recovered)
    swap = Swap.plan(production, recovered)
    seen = {}
    for cluster, server in ((production, swap.production), (recovered, swap.recovered)):
        try:
            seen[cluster.name] = found = facts(cluster.target())
        except psycopg.Error as exc:
            raise Refused(f"{cluster} does not answer: {exc}") from exc
        if Path(str(found["data_directory"])).resolve() != server.data.resolve():
            raise Refused(f"{cluster} runs from {found['data_directory']}, not {server.data} as registered")
        if found["in_recovery"]:
            raise Refused(f"{cluster} is in recovery")
        say(f"{cluster}: {server.data}, system identifier {found['system_identifier']}, timeline "
            f"{found['timeline']}, not in recovery")
    if seen[production.name]["system_identifier"] != seen[recovered.name]["system_identifier"]:
        raise Refused(f"{recovered} is not a copy of {production}: their system identifiers differ")
    if swap.before.exists():
        raise Refused(f"{swap.before} exists already")
    settings_text = (swap.recovered.data / "postgresql.auto.conf").read_text()
    if pitr_block(settings_text) is None:
        raise Refused(f"{recovered}'s postgresql.auto.conf no longer holds the recovery's settings block (rewritten "
                      "by ALTER SYSTEM?): the portal cannot tell them from production's")
    counts = {db.name: runbook_counts(recovered.target(db.name)) for db in recovered.databases.all()}
    say("row counts of the recovered cluster: " + (repr(counts) if any(counts.values()) else "no runbook tables"))
    save_state(request, swap, "checked", counts=counts, production_timeline=seen[production.name]["timeline"],
               recovered_was_running=True, recovered_cluster=recovered.pk)
    return production, recovered, swap


