"""/health: without credentials only {"status": ...}; the details for a signed-in staff user or the bearer token;
answered from the stored samples, with real clusters really stopped, without connecting to them or writing a row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from backups.models import Backup, BackupPolicy
from portal import tasks
from portal.models import AuditEvent, ManagedCluster
from tests.clusters import ScratchCluster
from tests.conftest import wait_for

TOKEN = "health-token-" + "k" * 40


@pytest.fixture
def watched_cluster(scratch_cluster) -> ScratchCluster:
    """A real cluster that logs every connection it receives."""
    with open(scratch_cluster.data / "postgresql.conf", "a") as conf:
        conf.write("log_connections = on\n")
    scratch_cluster.stop()
    scratch_cluster.start()
    return scratch_cluster


@pytest.fixture
def registered(db, watched_cluster) -> ManagedCluster:
    """Registered under a telling name, sampled once (as registering does), then stopped and sampled again by the
    minutely task: its stored status holds the server's version and psycopg's error text."""
    cluster = watched_cluster.register("registrar-prod-db")
    watched_cluster.stop()
    tasks.refresh_targets()
    cluster.refresh_from_db()
    assert not cluster.reachable and "Connection refused" in cluster.status_error
    return cluster


@pytest.fixture
def failing_policy(registered) -> BackupPolicy:
    policy = BackupPolicy.objects.create(name="grades-nightly-secret", kind="config", cluster=registered)
    Backup.objects.create(policy=policy, kind=policy.kind, cluster=registered, status=Backup.Status.FAILED,
                          error="pg_dump: connection to server at 127.0.0.1 failed: role paws360_admin")
    return policy


def _health(client, **headers) -> tuple[int, dict]:
    response = client.get(reverse("health"), headers=headers)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def connections_received(cluster: ScratchCluster) -> int:
    return (cluster.root / "server.log").read_text().count("connection received")


def rows_written() -> dict[str, tuple[int, int, int]]:
    """Rows inserted, updated and deleted per table in this test's transaction (the test client's requests run in
    it too)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables")
        return {name: counts for name, *counts in cursor.fetchall()}


def test_it_tells_nobody_without_credentials_more_than_fail(client, registered, failing_policy, settings):
    settings.HEALTH_TOKEN = TOKEN
    response = client.get(reverse("health"))
    assert response.status_code == 503
    assert response.content == b'{"status": "fail"}'
    text = response.content.decode()
    for secret in [registered.name, registered.server_version, str(registered.port), "Connection refused",
                   failing_policy.name, "paws360_admin", "127.0.0.1", "#"]:
        assert secret not in text


def test_a_signed_in_staff_user_and_the_bearer_token_see_the_details(client, auditor, registered, failing_policy,
                                                                     settings):
    settings.HEALTH_TOKEN = TOKEN
    status, body = _health(client, Authorization=f"Bearer {TOKEN}")
    assert status == 503 and body["status"] == "fail"
    assert "Connection refused" in body["clusters"]["registrar-prod-db"]["detail"]
    assert "role paws360_admin" in body["backups"]["grades-nightly-secret"]["detail"]

    client.force_login(auditor)
    status, signed_in = _health(client)
    assert status == 503 and signed_in["clusters"] == body["clusters"] and signed_in["backups"] == body["backups"]


@pytest.mark.parametrize("authorization", [
    "Bearer wrong-" + "k" * 40, f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", "",
])
def test_a_wrong_token_gets_the_minimal_answer_and_is_not_logged(client, registered, settings, caplog, authorization):
    settings.HEALTH_TOKEN = TOKEN
    response = client.get(reverse("health"), headers={"Authorization": authorization} if authorization else {})
    assert response.status_code == 503 and response.content == b'{"status": "fail"}'
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "k" * 20 not in logged


def test_a_wrong_bearer_token_is_logged_without_its_value(client, registered, settings, caplog):
    settings.HEALTH_TOKEN = TOKEN
    client.get(reverse("health"), headers={"Authorization": "Bearer not-the-token-zq81"})
    messages = [record.getMessage() for record in caplog.records if record.name == "portal.views"]
    assert messages == ["/health: a wrong bearer token from 127.0.0.1"]


def test_without_a_token_setting_no_bearer_is_accepted(client, registered, settings):
    settings.HEALTH_TOKEN = ""
    response = client.get(reverse("health"), headers={"Authorization": "Bearer "})
    assert response.content == b'{"status": "fail"}'


def test_it_answers_from_the_stored_sample_without_connecting_or_writing(client, dba, watched_cluster, db):
    cluster = watched_cluster.register("scratch")
    checked_at = cluster.checked_at
    client.force_login(dba)
    connections, written = connections_received(watched_cluster), rows_written()
    assert connections > 0 and written["portal_managedcluster"][:2] == [1, 1]  # both are seen: registering did

    status, body = _health(client)
    assert body["clusters"]["scratch"] == {"ok": True, "detail": f"PostgreSQL {cluster.server_version}"}
    assert connections_received(watched_cluster) == connections  # the server saw no connection
    assert rows_written() == written  # and the portal's database no write
    cluster.refresh_from_db()
    assert cluster.checked_at == checked_at

    watched_cluster.stop()
    status, body = _health(client)
    assert body["clusters"]["scratch"]["ok"] is True  # the stored sample: the request did not look

    tasks.refresh_targets()  # the worker's minutely sample
    status, body = _health(client)
    assert status == 503 and body["clusters"]["scratch"]["ok"] is False
    assert "Connection refused" in body["clusters"]["scratch"]["detail"]


def test_a_sample_older_than_a_few_minutes_fails_with_that_reason(client, dba, watched_cluster, settings):
    cluster = watched_cluster.register("scratch")
    client.force_login(dba)
    assert _health(client)[1]["clusters"]["scratch"]["ok"] is True
    ManagedCluster.objects.filter(pk=cluster.pk).update(
        checked_at=timezone.now() - timedelta(seconds=settings.STATUS_STALE_SECONDS + 120))
    status, body = _health(client)
    check = body["clusters"]["scratch"]
    assert status == 503 and check["ok"] is False
    assert check["detail"].startswith("last sampled 7 min") and "stale" in check["detail"]


def test_a_cluster_never_sampled_fails(client, dba, db):
    ManagedCluster.objects.create(name="new", port=1)
    client.force_login(dba)
    assert _health(client)[1]["clusters"]["new"]["detail"].startswith("not sampled yet")


def test_the_worker_samples_the_targets_every_minute(db):
    assert Schedule.objects.get(name="portal: refresh target status").cron == "* * * * *"
    assert Schedule.objects.get(func="portal.tasks.refresh_targets").schedule_type == Schedule.CRON


def test_a_check_that_raises_fails_that_check_only(client, dba, watched_cluster, caplog):
    """A schedule croniter cannot read (stored before such schedules were refused) fails its policy's check."""
    cluster = watched_cluster.register("scratch")
    policy = BackupPolicy.objects.create(name="old", kind="config", cluster=cluster)
    BackupPolicy.objects.filter(pk=policy.pk).update(schedule="0 2 31 2 *")
    client.force_login(dba)
    _, body = _health(client)
    assert body["backups"] == {"(backups)": {"ok": False, "detail": "the check itself failed; see the portal's log"}}
    assert body["clusters"]["scratch"]["ok"] is True
    assert "health check backups raised" in caplog.text


def test_it_is_200_with_a_worker_and_good_samples(client, qcluster, scratch_cluster, transactional_db):
    scratch_cluster.register("scratch")
    wait_for(lambda: client.get(reverse("health")).status_code == 200, message="the task cluster to report")
    assert client.get(reverse("health")).content == b'{"status": "ok"}'


def test_it_is_503_when_no_worker_runs(client, dba):
    client.force_login(dba)
    status, body = _health(client)
    assert status == 503
    assert "no django-q2 cluster is running" in body["task_cluster"]["detail"]


@pytest.mark.django_db(transaction=True)
def test_check_status_now_samples_at_once_for_whoever_may_change_clusters(client, dba, auditor, watched_cluster,
                                                                           qcluster):
    cluster = watched_cluster.register("scratch")
    watched_cluster.stop()
    changelist = reverse("admin:portal_managedcluster_changelist")
    client.force_login(auditor)
    assert b"check_now" not in client.get(changelist).content
    client.force_login(dba)
    page = client.post(changelist, {"action": "check_now", "_selected_action": [cluster.pk]}, follow=True)
    assert "Checking scratch now" in page.content.decode()
    wait_for(lambda: AuditEvent.objects.filter(action="cluster.check").exists(), message="the worker's check")
    cluster.refresh_from_db()
    assert cluster.reachable is False
    event = AuditEvent.objects.get(action="cluster.check")
    assert (event.actor, event.outcome) == (dba.username, "failure") and "Connection refused" in event.details["error"]
