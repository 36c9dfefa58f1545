"""The storage locations admin: no key fields; "test connection" writes, reads back and deletes a small object;
copies can be checked and copied again from the admin, through the real task queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from backups.models import BackupCopy, StorageLocation
from backups.storage import locations, offsite
from portal.models import AuditEvent
from tests.backups.conftest import catalog, local_location
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


LOCAL_FORM = {"kind": "local", "endpoint_url": "", "region": "", "bucket": "", "prefix": "", "credentials_profile": ""}


def add_location(user, name: str, path: str | Path):
    return client_for(user).post(reverse("admin:backups_storagelocation_add"),
                                 {**LOCAL_FORM, "name": name, "path": str(path)})


def path_errors(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return " ".join(response.context["adminform"].form.errors.get("path", []))


@pytest.fixture
def refused_paths(tmp_path: Path, scratch_cluster, archiving) -> dict[str, tuple[str, str]]:
    """Each refused folder, and the reason the form gives. The scratch cluster is registered (archiving)."""
    (tmp_path / "innocent").symlink_to("/etc")
    return {
        "root": ("/", "is the root folder"),
        "etc": ("/etc", "is inside /etc, a system folder"),
        "relative": ("backups", "Give an absolute path."),
        "data-directory": (str(scratch_cluster.data), "is inside the data directory of cluster scratch"),
        "wal-archive": (f"{archiving.path}/backups", "is inside the WAL archive of cluster scratch"),
        "symlink": (str(tmp_path / "innocent" / "backups"), "(resolves to /etc/backups) is inside /etc"),
    }


def test_each_refused_folder_is_a_form_error_and_nothing_is_saved(dba, refused_paths):
    before = StorageLocation.objects.count()
    for name, (path, reason) in refused_paths.items():
        assert reason in path_errors(add_location(dba, name, path)), name
    assert StorageLocation.objects.count() == before
    assert not AuditEvent.objects.filter(action__in=["storagelocation.create", "storage.init"]).exists()


def test_a_new_location_gets_its_marker_and_a_rename_rewrites_it(dba, tmp_path: Path):
    response = add_location(dba, "nas", tmp_path / "nas")
    assert response.status_code == 302
    location = StorageLocation.objects.get(name="nas")
    marker = tmp_path / "nas" / locations.MARKER
    assert json.loads(marker.read_text())["location"] == "nas" and location.marker_written
    change = reverse("admin:backups_storagelocation_change", args=[location.pk])
    response = client_for(dba).post(change, {**LOCAL_FORM, "name": "nas-2", "path": str(tmp_path / "nas")})
    assert response.status_code == 302
    assert json.loads(marker.read_text())["location"] == "nas-2"
    assert list(AuditEvent.objects.filter(action="storage.init").values_list("outcome", flat=True)) == [
        "success", "success"]


def test_a_folder_of_another_location_or_portal_or_not_empty_is_a_form_error(dba, tmp_path: Path):
    local_location("second-disk", tmp_path / "second")
    (tmp_path / "copied").mkdir()
    (tmp_path / "copied" / locations.MARKER).write_text((tmp_path / "second" / locations.MARKER).read_text())
    assert "names location 'second-disk', not 'copied'" in path_errors(add_location(dba, "copied", tmp_path / "copied"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "paws360.dump").write_bytes(b"someone's backup")
    assert "is not empty and has no .paws360-location marker" in path_errors(add_location(dba, "full",
                                                                                           tmp_path / "full"))
    assert not StorageLocation.objects.filter(name__in=["copied", "full"]).exists()


def test_the_s3_form_has_a_profile_and_no_key_fields(dba):
    html = client_for(dba).get(reverse("admin:backups_storagelocation_add")).content.decode()
    assert 'name="credentials_profile"' in html and 'name="bucket"' in html and 'name="endpoint_url"' in html
    assert "secret" not in html.lower().replace("s3_credentials_file", "")
    assert "access_key" not in html.lower()


def test_test_connection_reports_success_and_failure(s3_location, s3_server, dba):
    url = reverse("admin:backups_storagelocation_changelist")
    form = {"action": "test_connection", "_selected_action": [s3_location.pk]}
    response = client_for(dba).post(url, form, follow=True)
    expected = "wrote, read back and deleted 4096 bytes at s3://paws360-offsite/paws360/backups/"
    assert expected in response.content.decode()
    s3_server.stop()
    response = client_for(dba).post(url, form, follow=True)
    assert "Could not connect to the endpoint URL" in response.content.decode()
    outcomes = list(AuditEvent.objects.filter(action="storage.test").order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["success", "failure"]


def test_an_operator_cannot_run_test_connection(operator, s3_location):
    response = client_for(operator).get(reverse("admin:backups_storagelocation_changelist"))
    assert response.status_code == 200
    assert "test_connection" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_check_now_and_copy_again_run_as_tasks(policy, operator, tmp_path: Path, qcluster):
    # The worker is another process with its own BACKUP_ROOT: the policy gets a primary location of its own.
    primary = local_location("primary", tmp_path / "primary")
    second = local_location("second-disk", tmp_path / "second")
    policy.locations.set([primary, second])
    backup = catalog(policy)
    _, copy = offsite.copy_to_locations(backup)
    stored = tmp_path / "second" / backup.path
    stored.write_bytes(b"not the backup")

    url = reverse("admin:backups_backupcopy_changelist")
    client = client_for(operator)
    client.post(url, {"action": "check_now", "_selected_action": [copy.pk]})
    wait_for(lambda: BackupCopy.objects.get(pk=copy.pk).state == BackupCopy.State.FAILED, message="the check")
    assert "size mismatch" in BackupCopy.objects.get(pk=copy.pk).error

    client.post(url, {"action": "retry_copy", "_selected_action": [copy.pk]})
    wait_for(lambda: BackupCopy.objects.get(pk=copy.pk).state == BackupCopy.State.PRESENT, message="the copy")
    assert stored.read_bytes() == backup.local_path.read_bytes()
    actors = set(AuditEvent.objects.filter(action__startswith="backup.copy").values_list("actor", flat=True))
    assert operator.username in actors
