"""Storage locations that cannot point at the wrong place: refused folders, the marker, an unmounted disk, a
folder of another portal, and `manage.py init_location`."""

from __future__ import annotations

import json
import os
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from backups.models import Backup, BackupCopy, StorageLocation
from backups.storage import backends, locations, offsite
from portal import instance
from portal.models import AuditEvent
from tests.backups.conftest import catalog, local_location, run_now

pytestmark = pytest.mark.django_db
State = BackupCopy.State


def refusal(path: str | Path) -> str:
    """The model's reason for refusing a local location at `path` ("" when it is accepted)."""
    try:
        candidate = StorageLocation(name="candidate", kind=StorageLocation.Kind.LOCAL, path=str(path))
        candidate.full_clean()
        locations.validate(candidate)
    except ValidationError as exc:
        return " ".join(exc.message_dict["path"])
    return ""


@pytest.mark.parametrize(("path", "reason"), [
    ("/", "is the root folder"),
    ("/etc", "is inside /etc, a system folder"),
    ("/etc/paws360/backups", "is inside /etc, a system folder"),
    ("/var", "is a system folder: choose a folder inside it"),
    ("/var/lib/postgresql/15/backups", "is inside /var/lib/postgresql"),
    ("/usr/lib/../../boot/x", "resolves to /boot/x"),
    ("/lib64/x", "a system folder"),
    ("/dev/shm/backups", "is inside /dev, a system folder"),
    ("backups", "Give an absolute path."),
])
def test_system_folders_and_relative_paths_are_refused(path: str, reason: str):
    assert reason in refusal(path)


def test_a_folder_below_a_parent_like_srv_or_tmp_is_accepted(tmp_path: Path):
    assert refusal(tmp_path / "backups") == ""
    assert "is a system folder" in refusal("/srv")


def test_a_symbolic_link_into_etc_is_resolved_and_refused(tmp_path: Path):
    (tmp_path / "innocent").symlink_to("/etc")
    assert refusal(tmp_path / "innocent" / "backups") == (
        f"{tmp_path}/innocent/backups (resolves to /etc/backups) is inside /etc, a system folder.")


def test_a_clusters_data_directory_is_refused_inside_and_around(scratch_cluster):
    scratch_cluster.register()
    assert "is inside the data directory of cluster scratch" in refusal(scratch_cluster.data)
    assert "is inside the data directory of cluster scratch" in refusal(scratch_cluster.data / "pg_wal" / "x")
    assert "contains the data directory of cluster scratch" in refusal(scratch_cluster.root)


def test_the_embedded_clusters_folder_is_refused_whether_registered_or_not(db, settings):
    pg_folder = Path(settings.EMBEDDED_PGDATA).parent
    assert "is inside the embedded clusters' folder" in refusal(pg_folder / "portal" / "backups")
    assert "contains the embedded clusters' folder" in refusal(pg_folder.parent)


def test_a_wal_archive_is_refused_inside_and_around(archiving):
    folder = Path(archiving.path)
    assert "is inside the WAL archive of cluster scratch" in refusal(folder / "backups")
    assert "contains the WAL archive of cluster scratch" in refusal(folder.parent)


def test_another_locations_folder_is_refused_inside_and_around(backup_root: Path, tmp_path: Path):
    local_location("second-disk", tmp_path / "second")
    assert "is inside the folder of location second-disk" in refusal(tmp_path / "second" / "more")
    assert "contains the folder of location local" in refusal(tmp_path)


def test_the_check_runs_again_before_a_write_for_a_cluster_registered_since(policy, scratch_cluster):
    around = StorageLocation.objects.create(name="around", path=str(scratch_cluster.root))  # before the cluster
    locations.initialise(around, actor="test", adopt=True)
    policy.locations.set([StorageLocation.default_local(), around])
    first = catalog(policy)
    assert [c.state for c in offsite.copy_to_locations(first)] == [State.PRESENT, State.PRESENT]
    scratch_cluster.register()
    second = catalog(policy, source=first)
    _, copy = offsite.copy_to_locations(second)
    assert copy.state == State.FAILED and "contains the data directory of cluster scratch" in copy.error
    assert not (scratch_cluster.root / second.path).exists()


# --- The marker -------------------------------------------------------------------------------------------


def test_initialising_writes_the_marker_and_an_audit_event(db, tmp_path: Path):
    location = local_location("second-disk", tmp_path / "second")
    marker = json.loads((tmp_path / "second" / locations.MARKER).read_text())
    assert (marker["instance"], marker["location"]) == (instance.instance_id(), "second-disk")
    assert marker["created"] and StorageLocation.objects.get(pk=location.pk).marker_written
    event = AuditEvent.objects.get(action="storage.init")
    assert (event.outcome, event.details["marker"]) == ("success", str(tmp_path / "second" / locations.MARKER))
    assert "already its marker" in locations.initialise(location, actor="test")  # a second time: nothing to do


def test_a_copy_to_an_unmounted_disk_fails_marker_missing_and_writes_nothing(policy, tmpfs):
    disk = tmpfs("16m")
    second = local_location("second-disk", disk)
    policy.locations.set([StorageLocation.default_local(), second])
    mounted = catalog(policy)
    assert [c.state for c in offsite.copy_to_locations(mounted)] == [State.PRESENT, State.PRESENT]

    subprocess.run(["umount", str(disk)], check=True)
    assert not os.path.ismount(disk) and list(disk.iterdir()) == []  # the bare mount point, on the root disk
    backup = catalog(policy, source=mounted)
    primary, copy = offsite.copy_to_locations(backup, actor="test")
    assert primary.state == State.PRESENT
    assert copy.state == State.FAILED
    assert f"marker missing: {disk}/{locations.MARKER} — is the disk mounted?" in copy.error
    assert list(disk.iterdir()) == []
    assert not backup.copies.filter(location=second, state=State.PRESENT).exists()
    event = AuditEvent.objects.get(action="backup.copy", object_id=str(backup.pk))
    assert event.outcome == "failure" and "marker missing" in event.details["error"]


def test_a_backup_whose_primary_location_lost_its_marker_fails_and_writes_nothing(logical_policy, tmpfs):
    disk = tmpfs("64m")
    logical_policy.locations.set([local_location("primary-disk", disk)])
    assert run_now(logical_policy).status == Backup.Status.SUCCEEDED  # mounted, it works

    subprocess.run(["umount", str(disk)], check=True)
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.FAILED
    assert f"not taken: location primary-disk: marker missing: {disk}/{locations.MARKER}" in backup.error
    assert list(disk.iterdir()) == []
    assert not backup.copies.exists() and not backup.path


def test_a_marker_naming_another_portal_is_refused_for_copies_and_backups(policy, tmp_path: Path):
    second = local_location("second-disk", tmp_path / "second")
    policy.locations.set([StorageLocation.default_local(), second])
    (tmp_path / "second" / locations.MARKER).write_text(json.dumps(
        {"instance": "another-portal", "host": "elsewhere", "location": "second-disk", "created": "2026-01-01"}))
    backup = catalog(policy)
    _, copy = offsite.copy_to_locations(backup)
    assert copy.state == State.FAILED
    assert "names portal instance 'another-portal' (host elsewhere)" in copy.error
    assert "the folder belongs to another portal" in copy.error
    assert not (tmp_path / "second" / backup.path).exists()

    policy.locations.set([second])
    refused = run_now(policy)
    assert refused.status == Backup.Status.FAILED and "names portal instance 'another-portal'" in refused.error


def test_a_marker_naming_another_location_is_refused(db, tmp_path: Path):
    second = local_location("second-disk", tmp_path / "second")
    third = StorageLocation.objects.create(name="third", path=str(tmp_path / "third"))
    (tmp_path / "third").mkdir()
    (tmp_path / "third" / locations.MARKER).write_text((tmp_path / "second" / locations.MARKER).read_text())
    with pytest.raises(backends.StorageError, match="names location 'second-disk', not 'third'"):
        backends.for_location(third).put(tmp_path / "third" / locations.MARKER, "x", sha256="")
    assert second.marker_written


# --- manage.py init_location ------------------------------------------------------------------------------


def init_location(*args: str) -> str:
    out = StringIO()
    call_command("init_location", *args, stdout=out)
    return out.getvalue()


def test_init_location_creates_a_location_and_marks_its_folder(db, tmp_path: Path):
    assert "wrote" in init_location("nas", "--path", str(tmp_path / "nas"))
    location = StorageLocation.objects.get(name="nas")
    assert location.path == str(tmp_path / "nas") and location.marker_written
    assert json.loads((tmp_path / "nas" / locations.MARKER).read_text())["location"] == "nas"
    assert "already its marker" in init_location("nas")
    assert AuditEvent.objects.filter(action="storagelocation.create", object_id=str(location.pk)).exists()


def test_init_location_refuses_a_system_folder(db):
    with pytest.raises(CommandError, match="is inside /etc, a system folder"):
        init_location("bad", "--path", "/etc/backups")
    assert not StorageLocation.objects.filter(name="bad").exists()


def test_init_location_refuses_a_non_empty_folder_without_a_marker_unless_adopted(db, tmp_path: Path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "paws360.dump").write_bytes(b"an older portal's backup")
    with pytest.raises(CommandError, match=r"is not empty and has no \.paws360-location marker"):
        init_location("old", "--path", str(tmp_path / "old"))
    assert not StorageLocation.objects.filter(name="old").exists()
    assert not (tmp_path / "old" / locations.MARKER).exists()
    assert "wrote" in init_location("old", "--path", str(tmp_path / "old"), "--adopt")
    assert (tmp_path / "old" / locations.MARKER).exists()


def test_init_location_will_not_mark_the_bare_mount_point_of_a_disk_it_initialised(db, tmpfs):
    disk = tmpfs("1m")
    init_location("usb", "--path", str(disk))
    subprocess.run(["umount", str(disk)], check=True)
    with pytest.raises(CommandError, match=r"marker missing: .* — is the disk mounted\?"):
        init_location("usb")
    assert list(disk.iterdir()) == []
    assert "wrote" in init_location("usb", "--adopt")  # a DBA who knows the folder is new


def test_init_location_takes_over_another_portals_folder_only_when_adopted(db, tmp_path: Path):
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / locations.MARKER).write_text(json.dumps({"instance": "old-host", "location": "moved"}))
    with pytest.raises(CommandError, match="names portal instance 'old-host'"):
        init_location("moved", "--path", str(tmp_path / "moved"))
    init_location("moved", "--path", str(tmp_path / "moved"), "--adopt")
    marker = json.loads((tmp_path / "moved" / locations.MARKER).read_text())
    assert marker["instance"] == instance.instance_id()


def test_setup_initialises_the_default_location_but_never_a_lost_marker_again(backup_root: Path):
    default = StorageLocation.default_local()
    (backup_root / locations.MARKER).unlink()
    assert locations.initialise_default(actor="test").startswith("WARNING: location local: marker missing")
    assert not (backup_root / locations.MARKER).exists()
    StorageLocation.objects.filter(pk=default.pk).update(marker_written=None)  # an older portal's folder
    (backup_root / "logical").mkdir()
    assert "wrote" in locations.initialise_default(actor="test")
