"""Each good backup describes itself beside its files: what its catalog row holds, never a secret; rewritten when
its verification changes, copied with it, deleted with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from backups import files, verify
from backups.models import Backup, BackupCopy, BackupPolicy, StorageLocation
from backups.storage import catalog_manifest, offsite
from portal import instance
from tests.backups.conftest import QuietReporter, local_location, run_now

pytestmark = pytest.mark.django_db


def manifest_of(backup: Backup, root: Path | None = None) -> dict:
    return catalog_manifest.read((root or backup.policy.primary_root()) / backup.catalog_manifest_path)


def flip_byte(path: Path, offset: int = 4096) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_good_backup_describes_itself_beside_its_files(logical_policy, backup_root: Path):
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    content = manifest_of(backup)
    row = content["backup"]
    assert (content["instance"], content["host"]) == (instance.instance_id(), instance.HOST)
    assert (row["id"], row["kind"], row["name"], row["path"], row["format"]) == (
        backup.pk, "logical", backup.name, backup.path, "directory")
    assert (row["size_bytes"], row["sha256"], row["encrypted"]) == (backup.size_bytes, backup.sha256, False)
    assert row["manifest"] == backup.manifest and row["manifest"]["tables"]["paws360.students"] > 0
    assert row["companions"] == [{"path": backup.manifest["globals"]["path"],
                                  "sha256": backup.manifest["globals"]["sha256"]}]
    assert (row["created"], row["started"], row["verified_at"]) == (backup.created, backup.started,
                                                                   backup.verified_at)
    assert backup.started <= row["finished"] <= backup.finished
    assert (row["server_version"], row["client_version"]) == (backup.server_version, backup.client_version)
    assert (row["verification"], row["verification_seconds"]) == ("verified", backup.verification_seconds)
    assert content["policy"]["name"] == logical_policy.name and content["policy"]["kind"] == "logical"
    assert content["cluster"]["name"] == backup.cluster.name
    assert content["database"] == {"name": backup.database.name, "environment": "production"}
    assert not list(backup_root.rglob(f"{files.TEMP_PREFIX}*"))


def test_a_backup_that_failed_verification_has_no_manifest(logical_policy, age_keys, settings, backup_root: Path):
    logical_policy.encrypt, logical_policy.dump_format = True, BackupPolicy.DumpFormat.CUSTOM
    logical_policy.save()
    settings.BACKUP_AGE_IDENTITY_FILE = "/nonexistent/backup.key"
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.FAILED and backup.verification == Backup.Verification.FAILED
    assert list(backup_root.rglob("*.catalog.json")) == []


def test_no_secret_is_in_a_manifest(logical_policy, age_keys, embedded_cluster, backup_root: Path, tmp_path: Path,
                                    settings):
    logical_policy.encrypt, logical_policy.dump_format = True, BackupPolicy.DumpFormat.CUSTOM
    logical_policy.save()
    app_config = tmp_path / "api.yml"
    app_config.write_text("database:\n  password: app-secret-in-config\n")
    settings.BACKUP_APP_CONFIG_FILES = [str(app_config)]
    config = BackupPolicy.objects.create(name="embedded config", kind=BackupPolicy.Kind.CONFIG,
                                         cluster=embedded_cluster)
    texts = []
    for policy in (logical_policy, config):
        backup = run_now(policy)
        assert backup.status == Backup.Status.SUCCEEDED, backup.error
        texts.append((backup.policy.primary_root() / backup.catalog_manifest_path).read_text())
    identity, _ = age_keys
    secret_key = next(line for line in identity.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
    password = Path(django_settings.PGPASSFILE).read_text().split(":")[-1].strip()
    assert len(secret_key) > 40 and len(password) >= 8
    for text in texts:
        assert secret_key not in text and password not in text and "app-secret-in-config" not in text
    assert json.loads(texts[1])["backup"]["manifest"]["files"]  # the config files' checksums are there


def test_it_goes_with_its_copies_is_rewritten_when_verification_changes_and_leaves_with_them(logical_policy,
                                                                                            tmp_path: Path):
    logical_policy.dump_format = BackupPolicy.DumpFormat.CUSTOM
    logical_policy.save()
    second = local_location("second-disk", tmp_path / "second")
    logical_policy.locations.set([StorageLocation.default_local(), second])
    backup = run_now(logical_policy)
    assert backup.copies.get(location=second).state == BackupCopy.State.PRESENT
    copied = tmp_path / "second" / backup.catalog_manifest_path
    assert copied.read_bytes() == (backup.policy.primary_root() / backup.catalog_manifest_path).read_bytes()
    assert manifest_of(backup, tmp_path / "second")["backup"]["verification"] == "verified"

    flip_byte(backup.local_path)
    assert not verify.verify(backup, QuietReporter(backup))
    for root in (backup.policy.primary_root(), tmp_path / "second"):
        row = manifest_of(backup, root)["backup"]
        assert row["verification"] == "failed" and "sha256 of" in row["verification_error"]

    for copy in backup.copies.all():
        assert offsite.delete_copy(copy, actor="test", reason="test")
    assert not copied.exists() and not (backup.policy.primary_root() / backup.catalog_manifest_path).exists()
