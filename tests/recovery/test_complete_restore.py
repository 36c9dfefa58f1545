"""Complete restore (Scenario 1): rows changed after the backup are back, the stand-in API is really stopped while
the backup is restored and started again after the swap; beside production nothing is disturbed; a failure before
the swap leaves production untouched and the services running."""

from __future__ import annotations

import pytest

from backups import leases
from portal.models import AuditEvent, ManagedDatabase
from recovery import complete, services
from recovery.models import RecoveryRequest, RecoveryStep
from tests.recovery.conftest import HealthWatch, database_names, in_thread, query, run, submit

pytestmark = pytest.mark.django_db(transaction=True)

STATE = {
    "grades": "SELECT id, gpa::text FROM paws360.students WHERE id <= 10 ORDER BY id",
    "enrollments": "SELECT count(*), sum(id) FROM paws360.enrollments",
    "users": "SELECT count(*), max(id) FROM paws360.users",
}


def state(database) -> dict[str, list[tuple]]:
    return {name: query(database, statement) for name, statement in STATE.items()}


def damage(database) -> None:
    """What happened after the backup: grades wiped, enrollments deleted, an account added."""
    query(database, "UPDATE paws360.students SET gpa = 0.00 WHERE id <= 10")
    query(database, "DELETE FROM paws360.enrollments WHERE id <= 50")
    query(database, "INSERT INTO paws360.users (username, email, password_hash, role, created_at)"
                    " VALUES ('mallory', 'mallory@paws360.edu', 'x', 'admin', now())")


def steps_of(request: RecoveryRequest) -> dict[str, str]:
    return {step.name: step.status for step in request.steps.all()}


def test_it_replaces_production_with_the_backup_and_restarts_the_services(sample_database, good_backup, api,
                                                                          operator, dba):
    backed_up = state(sample_database)
    damage(sample_database)
    damaged = state(sample_database)
    assert damaged != backed_up
    # Database-level properties pg_dump leaves out without --create: the swapped database must keep them.
    name = sample_database.name
    query(sample_database, f'ALTER DATABASE "{name}" SET search_path = "$user", paws360, public')
    query(sample_database, f'ALTER DATABASE "{name}" SET work_mem = \'8MB\'')
    query(sample_database, f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
    request = submit(sample_database, operator, dba, destination=RecoveryRequest.Destination.REPLACE)
    assert request.destination_name == name

    leased = []
    watcher = in_thread(lambda: leased.append(_watch_lease(request, good_backup)))
    with HealthWatch(api.health_url) as health:
        request = run(request)
    watcher.join()

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert state(sample_database) == backed_up, "production holds the backup's rows again"
    before = request.verification["before_database"]
    assert before.startswith(f"{name}_before_") and before in database_names(sample_database)
    assert state(sample_database.cluster.target(before)) == damaged, "the old database stays, as it was"
    assert not any("_restored_" in n for n in database_names(sample_database))
    assert ManagedDatabase.objects.get(name=before).environment == ManagedDatabase.Environment.SCRATCH

    assert health.seen == ["up", "down", "up"], "the API was stopped, then started again"
    assert services.healthy(api.health_url)
    logs = {step.name: step.log for step in request.steps.all()}
    assert "paws360-api is down while restoring" in logs[complete.RESTORE]
    assert "paws360-api started and healthy" in logs[services.START_STEP]
    assert f"renamed {name} to {before}" in logs[complete.SWAP]
    assert set(steps_of(request).values()) == {RecoveryStep.Status.SUCCEEDED}
    assert leased == [True], "the backup was leased while it was restored"

    settings_after = query(sample_database.cluster.target(), "SELECT setconfig FROM pg_db_role_setting s JOIN "
                           "pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole = 0", [name])
    assert sorted(settings_after[0][0]) == ['search_path="$user", paws360, public', "work_mem=8MB"]
    acl = query(sample_database.cluster.target(), "SELECT datacl::text FROM pg_database WHERE datname = %s", [name])
    assert "=Tc/" not in acl[0][0] and "=c/" not in acl[0][0], "PUBLIC still has no CONNECT"

    counts = request.verification["row_counts"]
    assert counts["paws360.enrollments"] == {"backup": good_backup.manifest["tables"]["paws360.enrollments"],
                                             "restored": backed_up["enrollments"][0][0]}
    assert request.verification["runbook_counts"] == {
        t: good_backup.manifest["tables"][f"paws360.{t}"] for t in ("users", "students", "courses", "enrollments")}
    assert 0 < request.rto_seconds < 600 and request.verification["rto"]["met"]
    assert request.verification["rto"]["measured"] == "from the first step to the services healthy"
    assert request.rpo_seconds is not None and request.rpo_seconds >= 0
    assert AuditEvent.objects.filter(action="recovery.swap", object_id=str(request.pk)).exists()


def _watch_lease(request: RecoveryRequest, backup) -> bool:
    """True once the backup was seen leased while the request's restore step ran."""
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = RecoveryStep.objects.filter(request=request, name=complete.RESTORE, status="running").exists()
        if running and leases.is_leased(backup):
            return True
        if RecoveryRequest.objects.get(pk=request.pk).is_finished:
            return False
        time.sleep(0.02)
    return False


def test_beside_production_nothing_is_disturbed(sample_database, good_backup, api, operator):
    backed_up = state(sample_database)
    damage(sample_database)
    damaged = state(sample_database)
    request = submit(sample_database, operator, destination=RecoveryRequest.Destination.BESIDE)
    assert request.status == RecoveryRequest.Status.QUEUED, "beside production needs no approval"
    assert request.destination_name.startswith(f"{sample_database.name}_restored_")

    with HealthWatch(api.health_url) as health:
        request = run(request)

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert health.seen == ["up"], "the services were not touched"
    assert state(sample_database) == damaged, "production is untouched"
    restored = ManagedDatabase.objects.get(name=request.destination_name)
    try:
        assert restored.environment == ManagedDatabase.Environment.STAGING
        assert request.result_database == restored.name
        assert state(restored) == backed_up
        assert services.STOP_STEP not in steps_of(request)
        assert request.verification["rto"]["measured"] == "from the first step to the restored database verified"
    finally:
        query(sample_database.cluster.target(), f'DROP DATABASE IF EXISTS "{restored.name}" WITH (FORCE)')


def test_a_failure_before_the_swap_leaves_production_untouched_and_restarts_the_services(
        sample_database, good_backup, api, operator, dba):
    damage(sample_database)
    damaged = state(sample_database)
    # The catalogue and the file disagree: the restored counts cannot match, verification fails after the restore.
    good_backup.manifest["tables"]["paws360.students"] += 1
    good_backup.save()
    request = submit(sample_database, operator, dba, destination=RecoveryRequest.Destination.REPLACE)

    with HealthWatch(api.health_url) as health:
        request = run(request)

    assert request.status == RecoveryRequest.Status.FAILED
    assert "row counts differ" in request.error and "paws360.students" in request.error
    assert state(sample_database) == damaged, "production is untouched"
    assert database_names(sample_database) == {sample_database.name}, "the unfinished restore was dropped"
    assert health.seen == ["up", "down", "up"] and services.healthy(api.health_url)
    steps = steps_of(request)
    assert steps[services.STOP_STEP] == steps[complete.RESTORE] == RecoveryStep.Status.SUCCEEDED
    assert steps[complete.VERIFY] == RecoveryStep.Status.FAILED
    assert steps[complete.SWAP] == RecoveryStep.Status.SKIPPED
    assert steps[services.START_STEP] == RecoveryStep.Status.SUCCEEDED
    assert request.rto_seconds is None
    allowed = query(sample_database.cluster.target(), "SELECT datallowconn FROM pg_database WHERE datname = %s",
                    [sample_database.name])
    assert allowed == [(True,)]
