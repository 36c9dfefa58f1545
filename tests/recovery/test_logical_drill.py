"""The logical drill: the newest good backup restored into scratch, counted, checked with pg_amcheck, RTO measured
against the 4-hour objective, scratch dropped."""

from __future__ import annotations

import pytest

from portal import scratch
from recovery import logical_drill
from recovery.models import RecoveryRequest, RecoveryStep
from tests.backups.conftest import catalog
from tests.recovery.conftest import query, run, submit

pytestmark = pytest.mark.django_db(transaction=True)


def drills_left(request: RecoveryRequest) -> list[tuple]:
    """The request's scratch databases on the scratch cluster, and any drill's on production's cluster."""
    places = [(request.cluster, logical_drill.SCRATCH_PREFIX),
              (scratch.named(), scratch.key_prefix(logical_drill.SCRATCH_PREFIX, request.pk))]
    return [row for cluster, prefix in places for row in query(
        cluster.target(), "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix])]


def test_a_drill_restores_the_newest_backup_verifies_it_and_drops_scratch(sample_database, good_backup,
                                                                          logical_policy, operator, embedded_scratch):
    older = catalog(logical_policy, days_ago=1, source=good_backup)
    older.manifest = good_backup.manifest
    older.save()
    request = submit(sample_database, operator, kind=RecoveryRequest.Kind.DRILL)
    assert request.status == RecoveryRequest.Status.QUEUED

    request = run(request)

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert request.backup == good_backup, "the newest good backup"
    assert request.verification["verified"] is True
    counts = request.verification["row_counts"]
    assert counts == {t: {"backup": n, "restored": n} for t, n in good_backup.manifest["tables"].items()}
    assert request.verification["amcheck"]["ok"] and request.verification["amcheck"]["relations_checked"] > 20
    rto = request.verification["rto"]
    assert rto["met"] and rto["objective_seconds"] == 4 * 3600 and rto["measured"] == "from the first step to verified"
    assert 0 < request.rto_seconds < 600
    assert drills_left(request) == []
    assert {s.status for s in request.steps.all()} == {RecoveryStep.Status.SUCCEEDED}
    restore = request.steps.get(name=logical_drill.RESTORE).log
    assert "pg_restore started (pid" in restore
    assert f"created scratch database {request.result_database} on the scratch cluster {embedded_scratch}" in restore
    assert request.scratch_cluster == embedded_scratch, "restored beside production, never on it"


def test_a_drill_without_a_good_backup_fails_with_the_reason(sample_database, logical_policy, operator):
    catalog(logical_policy, verification="pending")
    request = run(submit(sample_database, operator, kind=RecoveryRequest.Kind.DRILL))

    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error == (f"no verified logical backup of {sample_database} can serve: take a backup, "
                             "or verify one")
    assert drills_left(request) == []
