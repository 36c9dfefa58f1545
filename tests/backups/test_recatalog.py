"""`manage.py recatalog`: the catalog rebuilt from a storage location after the portal's database lost it, equal to
what was there; a damaged backup reported and left out; a second run changes nothing; a restore works."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from backups import verify
from backups.models import Backup, BackupCopy, BackupPolicy, StorageLocation, WalArchive
from backups.storage import backends, catalog_manifest, locations, offsite
from portal import embedded
from portal.models import AuditEvent, ManagedCluster, ManagedDatabase
from tests.backups.conftest import QuietReporter, local_location, run_now
from tests.backups.test_catalog_manifest import flip_byte

PROJECT = Path(__file__).resolve().parents[2]
COMPARED = [name for name in catalog_manifest.BACKUP_FIELDS if name != "finished"]


def as_catalogued(backup: Backup) -> dict:
    """What the catalog knows of a backup, as recatalog should rebuild it."""
    backup = Backup.objects.select_related("policy", "cluster", "database").get(path=backup.path)
    policy = {name: getattr(backup.policy, name) for name in catalog_manifest.POLICY_FIELDS if name != "enabled"}
    return {**{name: getattr(backup, name) for name in COMPARED}, "status": backup.status, "policy": policy,
            "cluster": {name: getattr(backup.cluster, name) for name in catalog_manifest.CLUSTER_FIELDS},
            "database": backup.database.name if backup.database else None}


def lose_catalog() -> None:
    """What losing the portal's database loses (audit rows stay: the table refuses deletes)."""
    Backup.objects.all().delete()  # their copies, leases and configuration versions with them
    BackupPolicy.objects.all().delete()
    WalArchive.objects.all().delete()
    ManagedDatabase.objects.all().delete()
    ManagedCluster.objects.all().delete()
    assert not Backup.objects.exists()


def recatalog(*args: str) -> str:
    out = StringIO()
    call_command("recatalog", *args, "--quiet", stdout=out)
    return out.getvalue()


def manage(*args: str) -> subprocess.CompletedProcess:
    """`manage.py` as a DBA runs it, on the test database (the test must use `transaction=True`)."""
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def two_backups(logical_policy) -> list[Backup]:
    """A directory-format and a custom-format backup of the sample, each taken and verified by the pipeline."""
    custom = BackupPolicy.objects.create(name="paws360 custom", kind=BackupPolicy.Kind.LOGICAL,
                                         cluster=logical_policy.cluster, database=logical_policy.database,
                                         dump_format=BackupPolicy.DumpFormat.CUSTOM, verify_every=2)
    backups = [run_now(logical_policy), run_now(custom)]
    assert [b.verification for b in backups] == [Backup.Verification.VERIFIED] * 2, backups[0].error
    return backups


@pytest.mark.django_db
def test_the_catalog_is_rebuilt_equal_to_what_was_there_and_a_restore_works(two_backups):
    before = [as_catalogued(b) for b in two_backups]
    finished = [b.finished for b in two_backups]
    lose_catalog()

    output = recatalog("local")
    for backup in two_backups:
        assert f"recatalogued: {backup.path}: #{backup.pk}: logical" in output
    assert "2 manifests in local: 2 recatalogued, 0 already known, 0 damaged, 0 refused" in output
    assert [as_catalogued(b) for b in two_backups] == before
    for backup, was in zip(two_backups, finished, strict=True):
        rebuilt = Backup.objects.get(pk=backup.pk)
        assert rebuilt.started < rebuilt.finished <= was
        copy = rebuilt.copies.get()
        assert (copy.location.name, copy.state, copy.size_bytes, copy.sha256) == (
            "local", BackupCopy.State.PRESENT, backup.size_bytes, backup.sha256)
    policy = BackupPolicy.objects.get(name="paws360 full")
    assert not policy.enabled  # a DBA enables it again once the catalog is checked
    created = set(AuditEvent.objects.filter(action__endswith=".recatalog").values_list("action", flat=True))
    assert created == {"managedcluster.recatalog", "manageddatabase.recatalog", "backuppolicy.recatalog",
                       "backup.recatalog", "backupcopy.recatalog"}
    new = Backup.objects.create(policy=policy, kind="logical", cluster=policy.cluster, database=policy.database)
    assert new.pk > max(b.pk for b in two_backups)  # the id sequence moved past the old ids
    new.delete()

    embedded.register_scratch()  # the lost catalog lost its registration too: `manage.py setup_embedded` again
    restored = Backup.objects.get(pk=two_backups[0].pk)
    assert verify.verify(restored, QuietReporter(restored), actor="test"), restored.verification_error
    restored.refresh_from_db()
    assert restored.verification_error == "" and restored.verified_at > before[0]["verified_at"]


@pytest.mark.django_db(transaction=True)
def test_a_damaged_backup_is_reported_not_catalogued_and_a_second_run_changes_nothing(two_backups):
    good, damaged = two_backups
    flip_byte(damaged.local_path)
    lose_catalog()
    dry = manage("recatalog", "local", "--dry-run")
    assert dry.returncode == 1 and "(dry run) recatalogued" in dry.stdout and not Backup.objects.exists()
    events = AuditEvent.objects.count()

    first = manage("recatalog", "local")
    assert first.returncode == 1, first.stderr
    assert f"recatalogued: {good.path}: #{good.pk}" in first.stdout
    assert f"damaged: {damaged.path}: {damaged.local_path}: checksum mismatch" in first.stdout
    assert "1 recatalogued, 0 already known, 1 damaged" in first.stderr
    assert list(Backup.objects.values_list("pk", flat=True)) == [good.pk]
    assert "manifests: done" in first.stderr  # the progress line
    rows, events = {m: m.objects.count() for m in (Backup, BackupCopy, BackupPolicy)}, AuditEvent.objects.count()

    second = manage("recatalog", "local")
    assert second.returncode == 1
    assert f"already known: {good.path}: #{good.pk}" in second.stdout and "damaged:" in second.stdout
    assert {m: m.objects.count() for m in (Backup, BackupCopy, BackupPolicy)} == rows
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_a_lost_location_is_found_by_its_folder_and_its_copies_recorded(two_backups, tmp_path: Path):
    second = local_location("second-disk", tmp_path / "second")
    for backup in two_backups:
        backup.policy.locations.set([StorageLocation.default_local(), second])
        assert [c.state for c in offsite.copy_to_locations(backup)] == [BackupCopy.State.PRESENT] * 2
    lose_catalog()
    StorageLocation.objects.filter(name="second-disk").delete()

    assert "2 recatalogued" in recatalog(str(tmp_path / "second"))
    location = StorageLocation.objects.get(name="second-disk")
    assert location.path == str(tmp_path / "second")
    output = recatalog("local")
    assert output.count("; its copy in local recorded") == 2 and "0 recatalogued, 2 already known" in output
    for backup in two_backups:
        assert set(Backup.objects.get(pk=backup.pk).copies.values_list("location__name", flat=True)) == {
            "local", "second-disk"}


@pytest.mark.django_db
def test_a_location_whose_marker_is_missing_is_not_read(two_backups, backup_root: Path):
    lose_catalog()
    (backup_root / locations.MARKER).unlink()
    with pytest.raises(CommandError, match="marker missing"):
        recatalog("local")
    assert not Backup.objects.exists()


@pytest.mark.django_db
def test_an_s3_location_is_recatalogued_too(logical_policy, s3_location):
    logical_policy.locations.set([StorageLocation.default_local(), s3_location])
    backup = run_now(logical_policy)
    assert backup.copies.get(location=s3_location).state == BackupCopy.State.PRESENT
    assert backends.for_location(s3_location).stat(backup.catalog_manifest_path) is not None
    lose_catalog()
    output = recatalog("offsite")
    assert f"recatalogued: {backup.path}: #{backup.pk}" in output
    assert Backup.objects.get(pk=backup.pk).copies.get().location == s3_location


@pytest.mark.django_db(transaction=True)
def test_a_base_backup_is_recatalogued_and_verifies(archiving, tmp_path: Path):
    location = local_location("local-test", tmp_path / "backups")
    policy = BackupPolicy.objects.create(name="scratch base", kind=BackupPolicy.Kind.BASE, cluster=archiving.cluster,
                                         retention_days=7)
    policy.locations.add(location)
    backup = run_now(policy)
    assert backup.verification == Backup.Verification.VERIFIED, backup.error or backup.verification_error
    before = as_catalogued(backup)
    assert before["start_lsn"] and before["start_wal"] and before["timeline"] == 1
    lose_catalog()

    assert f"recatalogued: {backup.path}: #{backup.pk}" in recatalog("local-test")
    assert as_catalogued(backup) == before
    rebuilt = Backup.objects.get(pk=backup.pk)
    assert verify.verify(rebuilt, QuietReporter(rebuilt), actor="test"), rebuilt.verification_error
