"""The scheduled point-in-time drill: recovered into scratch, checked with pg_amcheck and row counts, its RTO
measured against the objective, the scratch cluster removed; a failed drill alerts (audit event, /health)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from portal.models import AuditEvent, ManagedCluster
from recovery import drills, pitr, tasks
from recovery.models import DrillSchedule, RecoveryRequest, RecoveryStep
from recovery.newcluster import NewCluster, postmaster_pid
from tests.clusters import RUN_AS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def drill_schedule(archiving, marked_target) -> DrillSchedule:
    return DrillSchedule.objects.create(kind=DrillSchedule.Kind.PITR, cluster=archiving.cluster)


def test_a_drill_schedule_is_weekly_by_default_in_one_place(drill_schedule):
    row = Schedule.objects.get(name=drill_schedule.schedule_name)
    assert (row.func, row.args, row.cron) == ("recovery.tasks.run_scheduled_drill", str(drill_schedule.pk), "0 4 * * 0")
    drill_schedule.enabled = False
    drill_schedule.save()
    assert not Schedule.objects.filter(name=drill_schedule.schedule_name).exists()


def test_a_scheduled_pitr_drill_recovers_into_scratch_checks_measures_and_removes_it(drill_schedule, recovery_root):
    drill = RecoveryRequest.objects.get(pk=tasks.run_scheduled_drill(drill_schedule.pk))
    assert drill.status == RecoveryRequest.Status.SUCCEEDED, f"{drill.error}\n{drill.log}"
    assert (drill.kind, drill.drill_kind) == ("drill", "pitr")
    assert drill.triggered_by == f"schedule:drill {drill_schedule.pk}"
    assert list(drill.steps.values_list("name", flat=True)) == pitr.DRILL_PLAN
    assert set(drill.steps.values_list("status", flat=True)) == {RecoveryStep.Status.SUCCEEDED}
    checks = drill.verification
    assert checks["amcheck"]["ok"] is True
    assert checks["database_counts"]["postgres"]["public.markers"] >= 1
    assert 0 < drill.rto_seconds < 600 and checks["rto_met"] is True and checks["rto_objective_seconds"] == 14400
    assert drill.target_time and drill.rpo_seconds is not None
    assert not Path(drill.work_directory).exists()  # the scratch cluster is stopped and gone
    assert not ManagedCluster.objects.filter(name=drill.destination_name).exists()
    ok, detail = drills.health()[f"{drill_schedule.cluster}: pitr"]
    assert ok and f"drill #{drill.pk} succeeded" in detail


def test_a_drill_that_misses_the_rto_objective_fails_and_alerts(drill_schedule, recovery_root, settings, client,
                                                                auditor):
    settings.RTO_OBJECTIVE_SECONDS = 1  # any real recovery takes longer than a second
    drill = RecoveryRequest.objects.get(pk=tasks.run_scheduled_drill(drill_schedule.pk))
    assert drill.status == RecoveryRequest.Status.FAILED
    assert "over the objective of 1 s" in drill.error and drill.verification["rto_met"] is False
    alert = AuditEvent.objects.get(action="recovery.drill_failed", object_id=str(drill.pk))
    assert alert.outcome == AuditEvent.Outcome.FAILURE and "over the objective" in alert.details["error"]
    cluster = NewCluster(Path(drill.work_directory), RUN_AS)
    assert postmaster_pid(cluster) is None and not cluster.root.exists()
    client.force_login(auditor)  # /health's details are for staff (or the bearer token)
    body = client.get("/health").json()
    state = body["drills"][f"{drill_schedule.cluster}: pitr"]
    assert body["status"] == "fail" and state["ok"] is False and f"drill #{drill.pk} failed" in state["detail"]


def test_a_second_drill_of_the_same_source_is_not_queued_while_one_runs(drill_schedule):
    first = drills.queue(drill_schedule, triggered_by="test")
    assert first is not None and first.status == RecoveryRequest.Status.QUEUED
    assert drills.queue(drill_schedule, triggered_by="test") is None


def test_manage_py_schedule_drill_schedules_changes_and_refuses_a_bad_cron(embedded_cluster):
    call_command("schedule_drill", "embedded", stdout=StringIO())
    schedule = DrillSchedule.objects.get(cluster=embedded_cluster, kind="pitr")
    assert Schedule.objects.get(name=schedule.schedule_name).cron == "0 4 * * 0"
    call_command("schedule_drill", "embedded", "--cron", "30 5 * * 6", stdout=StringIO())
    assert Schedule.objects.get(name=schedule.schedule_name).cron == "30 5 * * 6"
    with pytest.raises(CommandError, match="not a cron expression"):
        call_command("schedule_drill", "embedded", "--cron", "weekly", stdout=StringIO())
    assert DrillSchedule.objects.filter(cluster=embedded_cluster).count() == 1
