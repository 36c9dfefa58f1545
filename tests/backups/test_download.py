"""Downloading a backup: DBA only, an audit event either way, never an expired backup."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backups import files
from portal.models import AuditEvent
from tests.backups.conftest import catalog

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(backup) -> str:
    return reverse("backups:download", args=[backup.pk])


def test_a_dba_downloads_the_file_with_its_digest_and_an_audit_event(policy, dba):
    backup = catalog(policy)
    response = client_for(dba).get(url(backup))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == backup.local_path.read_bytes()
    assert hashlib.sha256(body).hexdigest() == backup.sha256
    assert response["Repr-Digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(backup.sha256)).decode()}:"
    assert f'filename="{backup.name}"' in response["Content-Disposition"]
    event = AuditEvent.objects.get(action="backup.download")
    assert (event.actor, event.outcome, event.object_id) == (dba.username, "success", str(backup.pk))


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_others_are_refused_with_403_and_a_denied_event(policy, role, request):
    user = request.getfixturevalue(role)
    backup = catalog(policy)
    response = client_for(user).get(url(backup))
    assert response.status_code == 403
    assert backup.name.encode() not in response.content
    event = AuditEvent.objects.get(action="backup.download")
    assert (event.actor, event.outcome) == (user.username, "denied")


def test_an_expired_backup_is_refused(policy, dba):
    backup = catalog(policy)
    backup.expired_at = timezone.now()
    backup.save()
    response = client_for(dba).get(url(backup))
    assert response.status_code == 410
    assert b"expired by retention" in response.content
    assert AuditEvent.objects.get(action="backup.download").outcome == "failure"


def test_a_failed_backup_has_nothing_to_send(policy, dba):
    backup = catalog(policy, status="failed", verification="pending")
    assert client_for(dba).get(url(backup)).status_code == 404


def test_a_folder_backup_streams_as_a_tar_that_unpacks_to_the_same_tree(policy, dba, tmp_path: Path):
    backup = catalog(policy, fmt="directory")
    response = client_for(dba).get(url(backup))
    assert response.status_code == 200 and response["Content-Type"] == "application/x-tar"
    assert backup.leases.filter(holder="download").exists()  # held while the stream is open
    body = b"".join(response.streaming_content)  # the test client closes the response at the end
    assert not backup.leases.exists()
    assert len(body) == int(response["Content-Length"])
    (tmp_path / "out").mkdir()
    subprocess.run(["/usr/bin/tar", "--extract", "--file=-", f"--directory={tmp_path / 'out'}"], input=body,
                   check=True)
    assert files.tree_digest(tmp_path / "out" / backup.local_path.name)[1] == backup.sha256


def test_the_response_names_no_secret(policy, dba, settings):
    backup = catalog(policy)
    response = client_for(dba).get(url(backup))
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    assert settings.PGPASSFILE not in headers and str(settings.BACKUP_ROOT) not in headers
    assert "pgpass" not in headers.lower()


def test_anonymous_users_are_sent_to_the_login_page(policy):
    backup = catalog(policy)
    response = Client().get(url(backup))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not AuditEvent.objects.filter(action="backup.download").exists()
