"""Making a recovered cluster production, for real: a point-in-time recovery of the scratch cluster to the marked
target, then the approved swap of data directories. Production ends on its own port with the data of the target,
on a new timeline, archiving into the same archive; a failure after the move, or a worker killed mid-way, leaves
production running from its own, complete data directory."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from backups.wal import walarchive
from portal import jobs, pg
from portal.models import AuditEvent, ManagedCluster
from recovery import approvals, promote, services
from recovery.datadirs import Server
from recovery.models import RecoveryRequest, RecoveryStep
from tests.backups.test_files import tiny_fs  # noqa: F401 (fixture: a file system of its own)
from tests.conftest import wait_for
from tests.recovery.conftest import HealthWatch, in_thread, run
from tests.recovery.pitr_fixtures import labels, pitr_request

pytestmark = pytest.mark.django_db(transaction=True)


def recover(archiving, target, dba) -> RecoveryRequest:
    """The point-in-time recovery whose cluster the tests make production."""
    pitr = run(approvals.submit(pitr_request(archiving, target), dba))
    assert pitr.status == RecoveryRequest.Status.SUCCEEDED, f"{pitr.error}\n{pitr.log}"
    return pitr


def promotion(pitr: RecoveryRequest, requester, **fields) -> RecoveryRequest:
    request = RecoveryRequest(kind=RecoveryRequest.Kind.PROMOTE, cluster=pitr.cluster, source_recovery=pitr,
                              reason="INC-2211: make the recovered cluster production", **fields)
    return approvals.submit(request, requester)


def server(cluster: ManagedCluster) -> dict:
    return promote.facts(cluster.target())


def page(pk: int, what: str = "change") -> str:
    return f"/admin/recovery/recoveryrequest/{pk}/{what}/"


def request_through_the_page(client, pitr: RecoveryRequest, operator) -> RecoveryRequest:
    """An Operator presses "Make this cluster production" on the recovery's page."""
    client.force_login(operator)
    shown = client.get(page(pitr.pk)).content.decode()
    assert "Make this cluster production" in shown and page(pitr.pk, "promote") in shown
    assert client.get(page(pitr.pk, "promote")).status_code == 405  # POST only
    refused = client.post(page(pitr.pk, "promote"), {"reason": " "}, follow=True)
    assert b"give the reason and the ticket" in refused.content
    done = client.post(page(pitr.pk, "promote"), {"reason": "INC-2211 make it production"}, follow=True)
    request = RecoveryRequest.objects.get(kind=RecoveryRequest.Kind.PROMOTE)
    assert done.redirect_chain[-1][0] == page(request.pk)
    assert b"waits for a second DBA" in done.content
    return request


def approve_through_the_page(client, request: RecoveryRequest, dba, services_named: str) -> None:
    client.force_login(dba)
    shown = client.get(page(request.pk)).content.decode()
    data = request.cluster.data_directory
    assert f"<code>{data}</code> is kept as <code>{data}.before_&lt;UTC time&gt;</code>" in shown
    assert f"The application services ({services_named}) are stopped first" in shown
    client.post(page(request.pk, "approve"), {"comment": "checked the recovered rows"})


def test_it_makes_the_recovered_cluster_production_on_its_own_port_archiving_a_new_timeline(
        client, archiving, marked_target, recovery_root, api, dba, dba2, operator):
    production = archiving.cluster
    data, port, old = Path(production.data_directory), production.port, server(production)
    pitr = recover(archiving, marked_target, dba)
    recovered = pitr.result_cluster

    secrets = Path(recovered.passfile)
    with open(data / "pg_hba.conf", "a") as hba:  # production's configuration changed after the base backup
        hba.write("# INC-2211: added after the base backup\n")
    request = request_through_the_page(client, pitr, operator)
    assert request.status == RecoveryRequest.Status.REQUESTED and request.needs_approval
    assert (request.requester, request.source_recovery, request.destination_name) == (operator, pitr, production.name)
    approve_through_the_page(client, request, dba2, api.name)
    with HealthWatch(api.health_url) as watch:
        request = run(request)
    assert request.status == RecoveryRequest.Status.SUCCEEDED, f"{request.error}\n{request.log}"
    assert list(request.steps.values_list("name", flat=True)) == promote.plan(True)
    assert set(request.steps.values_list("status", flat=True)) == {RecoveryStep.Status.SUCCEEDED}
    assert watch.seen == ["up", "down", "up"] and services.healthy(api.health_url)

    production.refresh_from_db()
    assert production.port == port and production.reachable and production.in_recovery is False
    assert labels(production.target()) == {"before"}
    now = server(production)
    assert now["timeline"] > old["timeline"] and now["system_identifier"] == old["system_identifier"]
    assert Path(now["data_directory"]) == data
    auto = (data / "postgresql.auto.conf").read_text()
    assert "recovery_target_time" not in auto and "archive_mode = 'off'" not in auto
    assert "archive_mode = 'on'" in auto  # production's own ALTER SYSTEM settings apply again
    assert "# INC-2211: added after the base backup" in (data / "pg_hba.conf").read_text()
    assert "pg_hba.conf: production's own" in request.steps.get(name=promote.SETTINGS).log
    state = request.promotion
    assert state["archived"].startswith(f"{now['timeline']:08X}")
    assert walarchive.stored(archiving.folder, state["archived"])
    assert walarchive.stored(archiving.folder, f"{now['timeline']:08X}.history")

    before = Path(state["before_data"])
    assert before.parent == data.parent and before.name.startswith("data.before_") and (before / "PG_VERSION").exists()
    assert not Path(recovered.data_directory).exists()
    recovered.refresh_from_db()
    assert recovered.control == ManagedCluster.Control.NONE and not recovered.data_directory
    assert f"Became production {production.name}" in recovered.status_error
    assert not secrets.exists()
    assert 0 < request.rto_seconds < 600
    assert AuditEvent.objects.filter(action="recovery.promote", object_id=str(request.pk)).exists()
    # The next promotion of the same recovery is refused: its cluster is production now.
    with pytest.raises(ValidationError, match="not a local cluster the portal controls"):
        promotion(pitr, dba)


def test_a_failure_after_the_move_puts_production_back_on_its_own_data_directory(
        archiving, marked_target, recovery_root, api, operator, dba, dba2):
    production = archiving.cluster
    data, old = Path(production.data_directory), server(production)
    pitr = recover(archiving, marked_target, dba)
    recovered_data = Path(pitr.result_cluster.data_directory)
    request = promotion(pitr, dba)
    with pytest.raises(approvals.Refused, match="requester cannot approve"):
        approvals.approve(request, dba)
    with pytest.raises(approvals.Refused, match="only a DBA"):
        approvals.approve(request, operator)
    approvals.approve(request, dba2)
    # The running copy does not notice, nor does pg_ctl stop; a start refuses it (data of another major version).
    (recovered_data / "PG_VERSION").write_text("14\n")

    request = run(request)
    assert request.status == RecoveryRequest.Status.FAILED
    steps = dict(request.steps.values_list("name", "status"))
    assert steps[promote.START] == RecoveryStep.Status.FAILED and steps[promote.VERIFY] == RecoveryStep.Status.SKIPPED
    assert steps[services.START_STEP] == RecoveryStep.Status.SUCCEEDED and services.healthy(api.health_url)
    start_log = request.steps.get(name=promote.START).log
    assert f"[roll back] production's own data directory is back: {request.promotion['before_data']}" \
        in start_log
    assert f"[roll back] production started from {data}" in start_log
    assert "[roll back] the recovered cluster did not start again" in start_log
    assert "database files are incompatible with server" in request.steps.get(name=promote.START).error

    assert labels(production.target()) == {"before", "after"}  # its own data, the row after the target included
    assert server(production) == old
    assert not Path(request.promotion["before_data"]).exists()
    assert (recovered_data / "PG_VERSION").read_text() == "14\n"  # the recovered data back where it was
    assert "recovery_target_time" in (recovered_data / "postgresql.auto.conf").read_text()
    rollback = AuditEvent.objects.get(action="recovery.promote.rollback", object_id=str(request.pk))
    assert rollback.outcome == "success"


def test_refused_when_the_recovery_failed_or_production_is_not_local_or_another_recovery_is_active(
        archiving, scratch_cluster, tiny_fs, dba):  # noqa: F811
    production = archiving.cluster
    failed = pitr_request(archiving, production.created, status=RecoveryRequest.Status.FAILED,
                          destination_name="x-pitr")
    failed.save()
    with pytest.raises(ValidationError, match="did not succeed"):
        promotion(failed, dba)
    recovered = ManagedCluster.objects.create(name="copy", port=1, control=ManagedCluster.Control.PG_CTL,
                                              data_directory=str(scratch_cluster.root), os_user=production.os_user,
                                              server_version_num=production.server_version_num)
    done = pitr_request(archiving, production.created, status=RecoveryRequest.Status.SUCCEEDED,
                        destination_name="y-pitr", result_cluster=recovered)
    done.save()
    ManagedCluster.objects.filter(pk=production.pk).update(control=ManagedCluster.Control.NONE)
    with pytest.raises(ValidationError, match=r"production \(scratch\) is not a local cluster the portal controls"):
        promotion(RecoveryRequest.objects.get(pk=done.pk), dba)
    ManagedCluster.objects.filter(pk=production.pk).update(control=ManagedCluster.Control.PG_CTL)
    ManagedCluster.objects.filter(pk=recovered.pk).update(server_version_num=140000)
    with pytest.raises(ValidationError, match="major versions differ"):
        promotion(RecoveryRequest.objects.get(pk=done.pk), dba)
    ManagedCluster.objects.filter(pk=recovered.pk).update(server_version_num=production.server_version_num)
    busy = pitr_request(archiving, production.created, status=RecoveryRequest.Status.RUNNING,
                        destination_name="z-pitr")
    busy.save()
    with pytest.raises(ValidationError, match=f"{busy} is active on scratch"):
        promotion(RecoveryRequest.objects.get(pk=done.pk), dba)
    busy.delete()
    with pytest.raises(ValidationError, match="copy is not running"):
        promotion(RecoveryRequest.objects.get(pk=done.pk), dba)
    ManagedCluster.objects.filter(pk=recovered.pk).update(data_directory=str(tiny_fs))
    with pytest.raises(ValidationError, match="different file systems: the portal moves data directories by renaming"):
        promotion(RecoveryRequest.objects.get(pk=done.pk), dba)
    assert not RecoveryRequest.objects.filter(kind=RecoveryRequest.Kind.PROMOTE).exists()


@pytest.fixture
def worker_env(monkeypatch, recovery_root: Path) -> None:
    monkeypatch.setenv("RECOVERY_ROOT", str(recovery_root / "clusters"))
    monkeypatch.setenv("RECOVERY_PASSFILE_DIR", str(recovery_root / "secrets"))


@pytest.fixture
def blocked_archive(archiving):
    """Production's archive folder; the test makes it read-only for the server's OS user (archiving fails), its
    mode is given back afterwards."""
    mode = archiving.folder.stat().st_mode & 0o7777
    yield archiving.folder
    archiving.folder.chmod(mode)


def test_a_worker_killed_mid_way_leaves_production_running_from_its_own_complete_data_directory(
        archiving, marked_target, recovery_root, api, dba, dba2, worker_env, blocked_archive, qcluster):
    production = archiving.cluster
    data = Path(production.data_directory)
    pitr = approvals.submit(pitr_request(archiving, marked_target), dba)  # run by the worker
    wait_for(lambda: RecoveryRequest.objects.filter(pk=pitr.pk, status="succeeded").exists(), timeout=120,
             message="the point-in-time recovery")
    pitr.refresh_from_db()
    blocked_archive.chmod(0o500)
    request = promotion(pitr, dba)
    approvals.approve(request, dba2)  # the worker runs it
    wait_for(lambda: RecoveryStep.objects.filter(request=request, name=promote.VERIFY,
                                                 log__contains="pg_switch_wal()").exists(),
             timeout=120, message="the worker to wait for archiving, with the recovered data in production's place")
    request.refresh_from_db()
    assert labels(production.target()) == {"before"} and not services.healthy(api.health_url)
    os.kill(request.worker_pid, signal.SIGKILL)
    wait_for(lambda: jobs.process_start_ticks(request.worker_pid) is None, message="the worker to be gone")

    assert jobs.reap_dead_jobs() == 1
    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.FAILED
    assert labels(production.target()) == {"before", "after"}, "production runs from its own data again"
    with pg.connect(production.target()) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone()[0] == str(data)
    assert not Path(request.promotion["before_data"]).exists()
    recovered = Server(Path(pitr.result_cluster.data_directory), production.os_user, production.major)
    assert recovered.pid(), "the recovered cluster runs again, as before the promotion"
    assert services.healthy(api.health_url)
    assert "[clean-up] production's own data directory is back" in request.log
    cleanup = AuditEvent.objects.get(action="recovery.cleanup", object_id=str(request.pk))
    assert (cleanup.outcome, cleanup.details["problems"]) == ("success", [])


def test_a_recovered_cluster_whose_settings_were_rewritten_is_refused_before_anything_stops(
        archiving, marked_target, recovery_root, api, dba, dba2):
    production = archiving.cluster
    pitr = recover(archiving, marked_target, dba)
    request = promotion(pitr, dba)
    approvals.approve(request, dba2)
    with pg.connect(pitr.result_cluster.target(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET work_mem = '8MB'")  # rewrites postgresql.auto.conf, without its comments
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    with pg.connect(production.target()) as conn:
        production_started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    request = run(request)
    assert request.status == RecoveryRequest.Status.FAILED
    assert "no longer holds the recovery's settings block" in request.error
    steps = dict(request.steps.values_list("name", "status"))
    assert steps[promote.CHECK] == RecoveryStep.Status.FAILED
    assert steps[services.STOP_STEP] == RecoveryStep.Status.SKIPPED and services.healthy(api.health_url)
    with pg.connect(production.target()) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == production_started
    with pg.connect(pitr.result_cluster.target()) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    assert labels(production.target()) == {"before", "after"}


def test_a_cancel_while_archiving_is_stuck_puts_production_back(
        archiving, marked_target, recovery_root, api, dba, dba2, blocked_archive):
    production = archiving.cluster
    pitr = recover(archiving, marked_target, dba)
    request = promotion(pitr, dba)
    approvals.approve(request, dba2)
    blocked_archive.chmod(0o500)
    worker = in_thread(run, request)
    wait_for(lambda: RecoveryStep.objects.filter(request=request, name=promote.VERIFY,
                                                 log__contains="pg_switch_wal()").exists(),
             timeout=60, message="the promotion to wait for archiving")
    assert labels(production.target()) == {"before"}  # the recovered data runs as production, not yet verified
    RecoveryRequest.objects.filter(pk=request.pk).update(cancel_requested=True)
    worker.join(timeout=90)
    assert not worker.is_alive()

    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.CANCELLED, f"{request.error}\n{request.log}"
    verify_log = request.steps.get(name=promote.VERIFY).log
    assert "[roll back] stopped the server running from" in verify_log
    assert "[roll back] the recovered cluster runs again" in verify_log
    assert labels(production.target()) == {"before", "after"} and labels(pitr.result_cluster.target()) == {"before"}
    assert services.healthy(api.health_url)
