"""Configuration backups: the cluster's files, pg_settings and pg_hba_file_rules, the application's files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from backups import verify
from backups.kinds import archive
from backups.models import Backup, BackupPolicy, ConfigFileVersion
from tests.backups.conftest import QuietReporter, run_now


@pytest.fixture
def app_config(tmp_path: Path, settings) -> Path:
    path = tmp_path / "etc" / "paws360-api.yml"
    path.parent.mkdir()
    path.write_text("database:\n  host: 127.0.0.1\n  pool: 10\n")
    settings.BACKUP_APP_CONFIG_FILES = [str(path)]
    return path


@pytest.fixture
def config_policy(embedded_cluster, backup_root) -> BackupPolicy:
    return BackupPolicy.objects.create(name="embedded config", kind=BackupPolicy.Kind.CONFIG,
                                       cluster=embedded_cluster)


def test_it_keeps_every_source_as_a_version_and_in_a_verified_archive(config_policy, app_config):
    backup = run_now(config_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    versions = {v.source: v for v in backup.config_files.all()}
    assert set(versions) == {"postgresql.conf", "pg_hba.conf", "pg_ident.conf", "postgresql.auto.conf",
                             "pg_settings", "pg_hba_file_rules", f"app:{app_config}"}
    port = django_settings.EMBEDDED_PG_PORT  # the managed cluster's: PORTAL_PG_PORT + 1
    assert f"port = {port}" in versions["postgresql.conf"].content
    assert f"port = '{port}'" in versions["pg_settings"].content
    assert "max_connections = " in versions["pg_settings"].content
    assert "scram-sha-256" in versions["pg_hba_file_rules"].content or "trust" in versions["pg_hba_file_rules"].content
    assert versions[f"app:{app_config}"].content == app_config.read_text()
    assert backup.local_path.name.endswith(".tar")
    assert set(backup.manifest["files"]) == set(backup.manifest["sources"].values())
    assert archive.check_archive(backup.local_path, backup.manifest["files"], encrypted=False) == 7


def test_a_second_backup_marks_only_what_changed(config_policy, app_config):
    run_now(config_policy)
    app_config.write_text("database:\n  host: 127.0.0.1\n  pool: 20\n")
    second = run_now(config_policy)
    changed = set(second.config_files.filter(changed=True).values_list("source", flat=True))
    assert changed == {f"app:{app_config}"}
    assert ConfigFileVersion.objects.filter(source=f"app:{app_config}").count() == 2


def test_a_missing_application_config_file_fails_the_backup_with_its_name(config_policy, settings):
    settings.BACKUP_APP_CONFIG_FILES = ["/etc/paws360/nope.yml"]
    backup = run_now(config_policy)
    assert backup.status == Backup.Status.FAILED
    assert "/etc/paws360/nope.yml" in backup.error and not backup.config_files.exists()


def test_a_changed_byte_in_the_archive_fails_verification(config_policy, app_config):
    backup = run_now(config_policy)
    data = bytearray(backup.local_path.read_bytes())
    at = data.index(b"pool: 10")
    data[at:at + 8] = b"pool: 99"
    backup.local_path.write_bytes(bytes(data))
    backup.sha256 = hashlib.sha256(bytes(data)).hexdigest()  # even with a matching checksum
    backup.save()
    assert not verify.verify(backup, QuietReporter(backup))
    backup.refresh_from_db()
    assert "sha256 differs" in backup.verification_error and "paws360-api.yml" in backup.verification_error


def test_an_encrypted_config_backup_keeps_no_content_in_the_database(config_policy, app_config, age_keys):
    app_config.write_text("database:\n  password: s3cret-from-the-app\n")
    config_policy.encrypt = True
    config_policy.save()
    backup = run_now(config_policy)
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    version = backup.config_files.get(source=f"app:{app_config}")
    assert version.content == "" and version.sha256 == hashlib.sha256(app_config.read_bytes()).hexdigest()
    assert b"s3cret-from-the-app" not in backup.local_path.read_bytes()
