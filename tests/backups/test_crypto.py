"""Encryption at rest with age: the stored bytes are never clear; verification decrypts on the fly."""

from __future__ import annotations

import io
import subprocess

import pytest

from backups import crypto
from backups.kinds import logical as dump
from backups.models import Backup, BackupPolicy
from portal.models import AuditEvent
from tests.backups.conftest import run_now

AGE_MAGIC = b"age-encryption.org/v1"


def test_it_round_trips_through_age(age_keys, tmp_path):
    stored = io.BytesIO()
    with crypto.encrypting_writer(stored) as writer:
        for _ in range(5):
            writer.write(b"student record\n" * 100_000)
    assert stored.getvalue().startswith(AGE_MAGIC) and b"student record" not in stored.getvalue()
    path = tmp_path / "x.age"
    path.write_bytes(stored.getvalue())
    with crypto.decrypting_reader(path) as clear:
        assert clear.read() == b"student record\n" * 500_000


def test_decrypting_with_the_wrong_identity_fails_clearly(age_keys, tmp_path, settings):
    path = tmp_path / "x.age"
    with open(path, "wb") as file, crypto.encrypting_writer(file) as writer:
        writer.write(b"secret")
    other = tmp_path / "other.key"
    subprocess.run(["/usr/bin/age-keygen", "-o", str(other)], check=True, capture_output=True)
    settings.BACKUP_AGE_IDENTITY_FILE = str(other)
    with pytest.raises(crypto.CryptoError, match=r"age could not decrypt x\.age"), \
            crypto.decrypting_reader(path) as clear:
        clear.read()


def test_missing_keys_configuration_is_a_clear_error(settings):
    settings.BACKUP_AGE_RECIPIENTS_FILE = ""
    with pytest.raises(crypto.CryptoError, match="BACKUP_AGE_RECIPIENTS_FILE is not set"), \
            crypto.encrypting_writer(io.BytesIO()):
        pass


def test_an_encrypted_logical_backup_is_stored_encrypted_and_verified_by_restoring_it(logical_policy, age_keys):
    logical_policy.encrypt = True
    logical_policy.dump_format = BackupPolicy.DumpFormat.CUSTOM
    logical_policy.full_clean()
    logical_policy.save()
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    assert backup.encrypted and backup.name.endswith(".dump.age")
    stored = backup.local_path.read_bytes()
    assert stored.startswith(AGE_MAGIC) and b"PGDMP" not in stored[:4096]
    globals_file = logical_policy.primary_root() / backup.manifest["globals"]["path"]
    assert globals_file.name.endswith(".globals.sql.age") and b"CREATE ROLE" not in globals_file.read_bytes()
    with crypto.decrypting_reader(backup.local_path) as clear:
        assert clear.read(5) == b"PGDMP"
        clear.read()


def test_verification_without_the_identity_fails_and_says_why(logical_policy, age_keys, settings):
    logical_policy.encrypt, logical_policy.dump_format = True, BackupPolicy.DumpFormat.CUSTOM
    logical_policy.save()
    settings.BACKUP_AGE_IDENTITY_FILE = "/nonexistent/backup.key"
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.FAILED
    assert backup.verification == Backup.Verification.FAILED
    assert "BACKUP_AGE_IDENTITY_FILE names /nonexistent/backup.key" in backup.verification_error
    logical = logical_policy.primary_root() / "logical"
    assert [p for p in logical.rglob("*") if p.is_file()] == [], "a run whose verification failed keeps no file"
    removed = AuditEvent.objects.get(action="backup.cleanup", object_id=str(backup.pk)).details["removed"]
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == sorted([backup.name, dump.globals_name(backup)])
