"""A logical drill and a single-table recovery restore into a scratch database on the scratch cluster. Without a
scratch cluster that can take the backup they are refused with the reason (the request form says so first), and
nothing is restored on production instead. The clean-up after a dead worker drops the scratch database from the
scratch cluster. A scratch cluster is never recovered itself."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from backups.models import Backup
from portal import scratch
from portal.models import AuditEvent
from recovery import cleanup, logical_drill, single_table, validation
from recovery.models import RecoveryRequest
from tests.recovery.conftest import query, run, submit

pytestmark = pytest.mark.django_db(transaction=True)
Kind = RecoveryRequest.Kind
NONE_REGISTERED = "no scratch cluster is registered as 'no-such-cluster' (SCRATCH_CLUSTER)"


def scratch_databases_on(cluster) -> list[str]:
    rows = query(cluster.target(), "SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                                   "OR starts_with(datname, %s)", [logical_drill.SCRATCH_PREFIX,
                                                                   single_table.SCRATCH_PREFIX])
    return [name for (name,) in rows]


def drill_and_table(database, requester) -> list[RecoveryRequest]:
    return [run(submit(database, requester, kind=Kind.DRILL)),
            run(submit(database, requester, kind=Kind.TABLE, tables=["paws360.students"],
                       merge_policy=RecoveryRequest.MergePolicy.NEW_TABLE))]


def test_without_a_scratch_cluster_a_drill_and_a_single_table_recovery_are_refused(sample_database, good_backup,
                                                                                   operator, settings):
    settings.SCRATCH_CLUSTER = "no-such-cluster"
    form_request = RecoveryRequest(kind=Kind.TABLE, cluster=sample_database.cluster, database=sample_database,
                                   tables=["paws360.students"], reason="INC-1")
    with pytest.raises(ValidationError) as refused:
        validation.validate(form_request)
    assert refused.value.message_dict["backup"][0].startswith(f"refused: {NONE_REGISTERED}")

    for request in drill_and_table(sample_database, operator):
        assert request.status == RecoveryRequest.Status.FAILED
        assert request.error.startswith(NONE_REGISTERED), request.error
        assert request.scratch_cluster is None and request.result_database == ""
    assert scratch_databases_on(sample_database.cluster) == [], "nothing restored on production instead"
    assert query(sample_database, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'students_restored%'") == [(0,)]
    alert = AuditEvent.objects.get(action="recovery.drill_failed")
    assert alert.details["error"].startswith(NONE_REGISTERED)


def test_a_scratch_cluster_older_than_the_backups_server_is_refused(sample_database, good_backup, operator):
    # As if taken from a PostgreSQL 16 server (this machine has 15 only): the scratch cluster runs 15.
    Backup.objects.filter(pk=good_backup.pk).update(server_version="16.4")

    for request in drill_and_table(sample_database, operator):
        assert request.status == RecoveryRequest.Status.FAILED
        assert ("the scratch cluster 'embedded-scratch' runs PostgreSQL 15, older than the backup's server (16)"
                in request.error), request.error
    assert scratch_databases_on(sample_database.cluster) == []


def test_after_a_dead_worker_the_scratch_database_is_dropped_from_the_scratch_cluster(sample_database, good_backup,
                                                                                      embedded_scratch, operator):
    request = submit(sample_database, operator, kind=Kind.DRILL)
    name = scratch.database_name(logical_drill.SCRATCH_PREFIX, request.pk)
    # What a drill's worker leaves when it dies mid-restore: its scratch database, recorded on the request.
    RecoveryRequest.objects.filter(pk=request.pk).update(
        status=RecoveryRequest.Status.FAILED, error="reaped: worker process gone", scratch_cluster=embedded_scratch,
        result_database=name)
    scratch.create_database(embedded_scratch, name)
    assert name in scratch_databases_on(embedded_scratch)

    cleanup.after_reaped(request)

    assert name not in scratch_databases_on(embedded_scratch)
    request.refresh_from_db()
    assert f"[clean-up] dropped {name} on the scratch cluster embedded-scratch" in request.log
    assert sample_database.name in {name for (name,) in query(sample_database.cluster.target(),
                                                                "SELECT datname FROM pg_database")}


def test_a_scratch_cluster_is_never_recovered(sample_database, embedded_scratch, operator):
    with pytest.raises(ValidationError, match="is a scratch cluster: it is never recovered"):
        RecoveryRequest(kind=Kind.PITR, cluster=embedded_scratch, reason="INC-1").full_clean()
    request = RecoveryRequest.objects.create(kind=Kind.DRILL, drill_kind="logical", cluster=embedded_scratch,
                                             reason="as a schedule would queue it")

    request = run(request)

    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error == "embedded-scratch is a scratch cluster: it is never recovered"
