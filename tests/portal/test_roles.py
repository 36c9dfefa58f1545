"""Roles: auditors see and change nothing; operators run things but cannot approve; DBAs do all."""

from __future__ import annotations

import pytest
from django.urls import reverse

from portal.models import AuditEvent, ManagedCluster


@pytest.fixture
def cluster(db) -> ManagedCluster:
    return ManagedCluster.objects.create(name="reporting", host="127.0.0.1", port=5432, role="postgres")


def test_an_auditor_sees_targets_but_cannot_change_one(client, auditor, cluster):
    client.force_login(auditor)
    url = reverse("admin:portal_managedcluster_change", args=[cluster.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert b'name="name"' not in page.content  # shown read-only, no form field
    response = client.post(url, {"name": "renamed", "host": "10.0.0.9", "port": 5432, "role": "postgres",
                                 "control": "none", "os_user": "postgres"})
    assert response.status_code == 403
    cluster.refresh_from_db()
    assert (cluster.name, cluster.host) == ("reporting", "127.0.0.1")


def test_an_auditor_cannot_add_or_delete_a_target(client, auditor, cluster):
    client.force_login(auditor)
    assert client.get(reverse("admin:portal_managedcluster_add")).status_code == 403
    delete_url = reverse("admin:portal_managedcluster_delete", args=[cluster.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert ManagedCluster.objects.filter(pk=cluster.pk).exists()


def test_an_operator_cannot_approve_but_a_dba_can(operator, dba):
    assert operator.has_perm("portal.request_recovery")
    assert operator.has_perm("portal.run_backup")
    assert not operator.has_perm("portal.approve_recovery")
    assert dba.has_perm("portal.approve_recovery")


def test_an_auditor_can_run_nothing(auditor):
    for capability in ("run_backup", "run_maintenance", "request_recovery", "approve_recovery", "download_backup"):
        assert not auditor.has_perm(f"portal.{capability}")
    assert auditor.has_perm("portal.view_auditevent")


def test_a_dba_change_is_audited(client, dba, cluster):
    client.force_login(dba)
    url = reverse("admin:portal_managedcluster_change", args=[cluster.pk])
    response = client.post(url, {"name": "reporting", "host": "127.0.0.2", "port": 5432, "role": "postgres",
                                 "control": "none", "os_user": "postgres", "passfile": "", "service": "",
                                 "data_directory": "", "databases-TOTAL_FORMS": 0, "databases-INITIAL_FORMS": 0})
    assert response.status_code == 302, response.content
    event = AuditEvent.objects.get(action="managedcluster.change")
    assert (event.actor, event.details["fields"]) == ("dana_dba", ["host"])


def test_nobody_can_edit_the_audit_trail_in_the_admin(client, dba):
    client.force_login(dba)
    assert client.get(reverse("admin:portal_auditevent_add")).status_code == 403


def test_the_dashboard_needs_a_login(client, db):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_relative_passfile_is_refused(client, dba):
    client.force_login(dba)
    response = client.post(reverse("admin:portal_managedcluster_add"), {
        "name": "x", "host": "h", "port": 5432, "role": "r", "control": "none", "os_user": "postgres",
        "passfile": "pgpass", "databases-TOTAL_FORMS": 0, "databases-INITIAL_FORMS": 0})
    assert response.status_code == 200
    assert b"Give an absolute path" in response.content
    assert not ManagedCluster.objects.filter(name="x").exists()
