"""The error pages: a request id on every response and every log record of the request; an unexpected error
logged with its traceback and that id, which the styled 500 page shows; 400, 403 and 404 pages in the admin's
style that say why, leaking nothing."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from backups.models import BackupPolicy
from portal.models import ManagedCluster


@pytest.fixture
def policy(db) -> BackupPolicy:
    cluster = ManagedCluster.objects.create(name="registrar", port=5432)
    return BackupPolicy.objects.create(name="registrar config", kind="config", cluster=cluster)


def styled(page: str) -> bool:
    return 'id="header"' in page and "PAWS360 DB Ops Portal" in page and "admin/css/base.css" in page


def test_every_response_carries_a_request_id_of_its_own(client, db):
    first, second = client.get("/health")["X-Request-ID"], client.get("/health")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}", first) and first != second


@pytest.mark.urls("tests.portal.raising_urls")
def test_an_unexpected_error_is_logged_with_the_id_the_styled_page_shows(client, db, log_file):
    client.raise_request_exception = False
    response = client.get("/boom")
    request_id = response["X-Request-ID"]
    page = response.content.decode()
    assert response.status_code == 500 and styled(page)
    assert f'<code id="request-id">{request_id}</code>' in page
    assert "boom" not in page and "Traceback" not in page

    logged = log_file.read_text()
    assert f"INFO [{request_id}] " in logged and "about to fail" in logged  # every record of the request
    error = logged[logged.index(f"ERROR [{request_id}] "):]
    assert "Internal Server Error: /boom" in error and "Traceback" in error
    assert "RuntimeError: boom: the secret detail of a bug" in error


def test_an_auditor_trying_a_dba_action_is_told_why(client, auditor, policy):
    client.force_login(auditor)
    response = client.post(f"/backups/policies/{policy.pk}/retention/expire/")
    page = response.content.decode()
    assert response.status_code == 403 and styled(page)
    assert '<p class="errornote" id="error-reason">Only a DBA may expire backups.</p>' in page
    assert "audrey_auditor</strong>, in the groups: Auditor" in page


def test_the_admins_own_refusal_says_so_and_names_the_groups(client, auditor, policy):
    client.force_login(auditor)
    response = client.post(f"/admin/backups/backuppolicy/{policy.pk}/run/")
    assert response.status_code == 403
    assert "Running a backup needs the Operator or DBA role." in response.content.decode()
    response = client.get("/admin/backups/backuppolicy/add/")
    page = response.content.decode()
    assert response.status_code == 403 and styled(page) and "Your account may not do this." in page


def test_a_stale_form_is_refused_with_the_reason(operator, policy):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    response = strict.post(f"/admin/backups/backuppolicy/{policy.pk}/run/")
    page = response.content.decode()
    assert response.status_code == 403 and styled(page)
    assert "security token was missing or had expired" in page and "CSRF cookie not set" in page


def test_a_missing_object_is_named_and_a_missing_page_is_the_address(client, dba, policy):
    client.force_login(dba)
    response = client.get("/backups/policies/999999/retention/")
    assert response.status_code == 404 and styled(response.content.decode())
    assert "No BackupPolicy matches the given query." in response.content.decode()

    response = client.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404 and styled(page)
    assert "There is no page at /no/such/page/." in page
    assert "URLconf" not in page and "retention/expire" not in page  # not the patterns the resolver tried


def test_a_refused_host_is_a_styled_400(client, db):
    response = client.get("/health", headers={"Host": "evil.example"})
    assert response.status_code == 400 and styled(response.content.decode())
    assert response["X-Request-ID"]
