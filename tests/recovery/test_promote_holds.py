"""A promotion and the clusters' backups keep out of each other's way: no backup starts on a cluster whose data
directory a promotion is swapping, and a promotion does not stop a server that a backup is reading."""

from __future__ import annotations

import pytest

from backups.models import Backup, BackupPolicy
from portal.models import ManagedCluster
from recovery import promote
from recovery.approvals import Refused
from recovery.models import RecoveryRequest
from tests.backups.conftest import run_now

pytestmark = pytest.mark.django_db

Kind, Status = RecoveryRequest.Kind, RecoveryRequest.Status


def promotion(production: ManagedCluster, recovered: ManagedCluster, dba) -> RecoveryRequest:
    pitr = RecoveryRequest.objects.create(kind=Kind.PITR, cluster=production, status=Status.SUCCEEDED,
                                          result_cluster=recovered, requester=dba, reason="INC-7: bad grade import")
    return RecoveryRequest.objects.create(kind=Kind.PROMOTE, cluster=production, source_recovery=pitr,
                                          status=Status.RUNNING, requester=dba, reason="INC-7: make it production")


def test_no_backup_of_either_cluster_starts_while_a_promotion_swaps_them(embedded_cluster, backup_root, dba):
    recovered = ManagedCluster.objects.create(name="recovered", port=1)
    promoting = promotion(embedded_cluster, recovered, dba)
    for cluster in (embedded_cluster, recovered):
        policy = BackupPolicy.objects.create(name=f"{cluster} config", kind="config", cluster=cluster)
        held = run_now(policy)
        assert held.status == Backup.Status.FAILED
        assert held.error == f"not taken: {promoting} is swapping {cluster}'s data directory"

    RecoveryRequest.objects.filter(pk=promoting.pk).update(status=Status.SUCCEEDED)
    assert run_now(BackupPolicy.objects.get(cluster=embedded_cluster)).status == Backup.Status.SUCCEEDED


def test_a_promotion_is_refused_while_a_backup_of_either_cluster_is_running(embedded_cluster, dba):
    recovered = ManagedCluster.objects.create(name="recovered", port=1)
    policy = BackupPolicy.objects.create(name="recovered config", kind="config", cluster=recovered)
    running = Backup.objects.create(policy=policy, kind=policy.kind, cluster=recovered, status=Backup.Status.RUNNING)

    with pytest.raises(Refused, match=f"backup {running} of recovered is running: stopping the server would break"):
        promote.no_backup_running(embedded_cluster, recovered)

    Backup.objects.filter(pk=running.pk).update(status=Backup.Status.SUCCEEDED)
    promote.no_backup_running(embedded_cluster, recovered)  # nothing in the way now
