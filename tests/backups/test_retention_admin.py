"""The retention preview: anyone who may view policies sees keep/expire and why; only a DBA expires, by POST
with CSRF, and only what the preview showed."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from backups import leases
from backups.models import Backup
from portal.models import AuditEvent
from tests.backups.conftest import catalog

pytestmark = pytest.mark.django_db


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def aged(policy) -> dict[str, Backup]:
    policy.min_verified = 1
    policy.save()
    new = catalog(policy, days_ago=1)
    return {"new": new, "old": catalog(policy, days_ago=45, source=new)}


@pytest.mark.parametrize("role", ["operator", "auditor", "dba"])
def test_the_preview_shows_each_backup_with_its_decision_and_reason(policy, aged, role, request):
    response = client_for(request.getfixturevalue(role)).get(reverse("backups:retention", args=[policy.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    new_row = re.search(rf'<tr class="keep" data-backup="{aged["new"].pk}">(.*?)</tr>', html, re.S)
    old_row = re.search(rf'<tr class="expire" data-backup="{aged["old"].pk}">(.*?)</tr>', html, re.S)
    assert new_row and "within the 30-day retention" in new_row.group(1)
    assert old_row and "beyond the 30-day retention" in old_row.group(1)
    assert ('id="expire-form"' in html) is (role == "dba")
    assert Backup.objects.filter(expired_at__isnull=False).count() == 0  # a preview changes nothing


def test_an_operator_cannot_expire_and_the_refusal_is_audited(policy, aged, operator):
    response = client_for(operator).post(reverse("backups:retention_apply", args=[policy.pk]),
                                         {"backup": [aged["old"].pk]})
    assert response.status_code == 403
    assert aged["old"].local_path.exists()
    event = AuditEvent.objects.get(action="retention.apply")
    assert (event.actor, event.outcome) == (operator.username, "denied")


def test_expiry_needs_the_csrf_token(policy, aged, dba):
    client = client_for(dba, enforce_csrf_checks=True)
    url = reverse("backups:retention_apply", args=[policy.pk])
    assert client.post(url, {"backup": [aged["old"].pk]}).status_code == 403
    assert aged["old"].local_path.exists()
    assert client.get(reverse("backups:retention", args=[policy.pk])).status_code == 200
    token = client.cookies["csrftoken"].value
    response = client.post(url, {"backup": [aged["old"].pk], "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not aged["old"].local_path.exists()


def test_a_dba_expires_what_the_preview_showed_with_audit_events(policy, aged, dba):
    response = client_for(dba).post(reverse("backups:retention_apply", args=[policy.pk]),
                                    {"backup": [aged["old"].pk]}, follow=True)
    assert "Expired 1 backup(s)" in response.content.decode()
    aged["old"].refresh_from_db()
    assert aged["old"].expired_at is not None and not aged["old"].local_path.exists()
    assert aged["new"].local_path.exists()
    assert AuditEvent.objects.filter(action="backup.expire", actor=dba.username).count() == 1
    assert AuditEvent.objects.filter(action="backup.copy.delete", actor=dba.username).count() == 1
    assert AuditEvent.objects.get(action="retention.apply").details["expired"] == [aged["old"].pk]


def test_a_backup_not_in_the_preview_is_not_expired(policy, aged, dba):
    newer_old = catalog(policy, days_ago=40, source=aged["new"])  # appeared after the preview was shown
    client_for(dba).post(reverse("backups:retention_apply", args=[policy.pk]), {"backup": [aged["old"].pk]})
    assert newer_old.local_path.exists()
    newer_old.refresh_from_db()
    assert newer_old.expired_at is None


def test_a_backup_leased_since_the_preview_is_kept_with_a_warning(policy, aged, dba):
    with leases.hold(aged["old"], "recovery:7"):
        response = client_for(dba).post(reverse("backups:retention_apply", args=[policy.pk]),
                                        {"backup": [aged["old"].pk]}, follow=True)
    assert "were kept: they are in use now" in response.content.decode()
    assert aged["old"].local_path.exists()


def test_the_policy_page_links_to_the_preview(policy, dba):
    response = client_for(dba).get(reverse("admin:backups_backuppolicy_change", args=[policy.pk]))
    assert reverse("backups:retention", args=[policy.pk]) in response.content.decode()
