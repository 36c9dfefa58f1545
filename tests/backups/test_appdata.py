"""Application-data backups: named folders archived with a sha256 per file, encrypted when asked."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from backups import crypto
from backups.models import Backup, BackupPolicy
from tests.backups.conftest import run_now


@pytest.fixture
def app_data(tmp_path: Path, settings) -> Path:
    folder = tmp_path / "srv" / "paws360" / "uploads"
    (folder / "transcripts").mkdir(parents=True)
    (folder / "transcripts" / "1001.pdf").write_bytes(b"%PDF-1.7 transcript of student 1001\n" * 1000)
    (folder / "photo.jpg").write_bytes(bytes(range(256)) * 64)
    (folder / "latest").symlink_to(folder / "photo.jpg")
    settings.BACKUP_APP_DATA_DIRS = [str(folder)]
    return folder


@pytest.fixture
def appdata_policy(embedded_cluster, backup_root) -> BackupPolicy:
    return BackupPolicy.objects.create(name="paws360 uploads", kind=BackupPolicy.Kind.APPDATA,
                                       cluster=embedded_cluster)


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}


def test_it_archives_the_folders_with_a_checksum_manifest(appdata_policy, app_data):
    backup = run_now(appdata_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.verification == Backup.Verification.VERIFIED
    stored = members(backup.local_path.read_bytes())
    pdf = str(app_data / "transcripts" / "1001.pdf").lstrip("/")
    assert stored[pdf] == (app_data / "transcripts" / "1001.pdf").read_bytes()
    assert backup.manifest["files"][pdf]["sha256"] == hashlib.sha256(stored[pdf]).hexdigest()
    assert f"{backup.manifest['files'][pdf]['sha256']}  {pdf}" in stored["MANIFEST.sha256"].decode()
    symlink = len(str(app_data / "photo.jpg"))
    assert backup.estimated_bytes == len(stored[pdf]) + len(stored[str(app_data / "photo.jpg").lstrip("/")]) + symlink


def test_an_encrypted_archive_is_verified_by_decrypting_it(appdata_policy, app_data, age_keys):
    appdata_policy.encrypt = True
    appdata_policy.save()
    backup = run_now(appdata_policy)
    assert backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    assert b"transcript of student" not in backup.local_path.read_bytes()
    with crypto.decrypting_reader(backup.local_path) as clear:
        assert b"transcript of student 1001" in clear.read()


def test_no_configured_folder_fails_the_backup_clearly(appdata_policy, settings):
    settings.BACKUP_APP_DATA_DIRS = []
    backup = run_now(appdata_policy)
    assert backup.status == Backup.Status.FAILED and "BACKUP_APP_DATA_DIRS" in backup.error
