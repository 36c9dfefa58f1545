"""After a run that died: its server stopped and its data removed (its log kept), by the reaper or by the next
recovery's sweep."""


from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from portal import audit, jobs, pg
from recovery import newcluster, passfile
from recovery.models import RecoveryRequest
from recovery.newcluster import NewCluster

log = logging.getLogger(__name__)


def kept_log(request: RecoveryRequest, cluster: NewCluster) -> Path:
    return Path(settings.RECOVERY_ROOT) / "failed" / f"{request.pk}-{cluster.name}.server.log"


def clean_up(request: RecoveryRequest) -> None:
    """Stop the server a dead run started and remove its data (its log stays). Only on the host that ran it."""
    if not request.work_directory or request.result_cluster_id or request.worker_host not in ("", jobs.HOST):
        return
    cluster = NewCluster(Path(request.work_directory), request.cluster.os_user, request.cluster.major)
    if not cluster.root.exists():
        return
    was_running = newcluster.postmaster_pid(cluster) is not None
    kept = newcluster.discard(cluster, kept_log(request, cluster))
    passfile.remove(cluster.name)
    audit.record("recovery.pitr.cleanup", actor="system:recovery", obj=request, target=str(request.cluster),
                 details={"work_directory": str(cluster.root), "server_was_running": was_running,
                          "server_log": str(kept), "status": request.status})


def sweep_leftovers(say: Callable[[str], None] = log.warning) -> None:
    """What earlier runs that died left behind: the next recovery cleans it up before it starts. A leftover that
    cannot be cleaned up is reported, and does not stop the new recovery."""
    finished = [RecoveryRequest.Status.FAILED, RecoveryRequest.Status.CANCELLED]
    for old in (RecoveryRequest.objects.filter(status__in=finished, kind__in=list(CLEANUP_KINDS))
                .exclude(work_directory="").select_related("cluster")):
        try:
            clean_up(old)
        except (newcluster.BuildError, OSError, pg.PgToolError) as exc:
            say(f"could not clean up after recovery #{old.pk} ({old.work_directory}): {exc}")


# The kinds of request that build a cluster in RECOVERY_ROOT: what a dead run of them left is swept.
CLEANUP_KINDS = (RecoveryRequest.Kind.PITR, RecoveryRequest.Kind.DRILL)


def undo_dead_run(request: RecoveryRequest, say: Callable[[str], None]) -> None:
    clean_up(request)
