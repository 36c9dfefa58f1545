"""Fixtures for backup tests: a backup root of the test's own, policies on the small sample database, age
keys, and running a backup the way the worker does (in this process)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connections

from backups import pipeline, runs
from backups.models import Backup, BackupPolicy, ConfigFileVersion
from portal.jobs import Reporter, run_job


@pytest.fixture
def backup_root(tmp_path: Path, settings, monkeypatch) -> Path:
    """BACKUP_ROOT for this test, here and in any worker it starts."""
    root = tmp_path / "backups"
    root.mkdir()
    settings.BACKUP_ROOT = root
    monkeypatch.setenv("BACKUP_ROOT", str(root))
    return root


@pytest.fixture
def logical_policy(sample_database, backup_root) -> BackupPolicy:
    return BackupPolicy.objects.create(name="paws360 full", kind=BackupPolicy.Kind.LOGICAL,
                                       cluster=sample_database.cluster, database=sample_database)


@pytest.fixture
def age_keys(tmp_path: Path, settings, monkeypatch) -> tuple[Path, Path]:
    """A real age key pair; the deployment's configuration names the two files."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    identity, recipients = keys / "backup.key", keys / "backup.pub"
    subprocess.run(["/usr/bin/age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(["/usr/bin/age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True)
    recipients.write_text(public.stdout)
    settings.BACKUP_AGE_IDENTITY_FILE, settings.BACKUP_AGE_RECIPIENTS_FILE = str(identity), str(recipients)
    monkeypatch.setenv("BACKUP_AGE_IDENTITY_FILE", str(identity))
    monkeypatch.setenv("BACKUP_AGE_RECIPIENTS_FILE", str(recipients))
    return identity, recipients


def run_now(policy: BackupPolicy, actor: str = "tester") -> Backup:
    """Create the backup row as "Run now" does and run the pipeline here, as a worker would."""
    backup = runs.create(policy, actor=actor, via="test")
    run_job(Backup, backup.pk, pipeline.perform)
    backup.refresh_from_db()
    return backup


def config_versions(cluster, app_file: Path, settings, *contents: str) -> list[ConfigFileVersion]:
    """One configuration backup of `cluster` per content of the application file `app_file`; the file's
    versions, oldest first."""
    settings.BACKUP_APP_CONFIG_FILES = [str(app_file)]
    policy = BackupPolicy.objects.create(name=f"{cluster} config", kind="config", cluster=cluster)
    for content in contents:
        app_file.write_text(content)
        run_now(policy)
    return list(ConfigFileVersion.objects.filter(source=f"app:{app_file}").order_by("created"))


def in_thread(func: Callable[..., object]) -> Callable[..., None]:
    """`func` for a thread of its own: its database connection is closed when it ends."""

    def run(*args: object) -> None:
        try:
            func(*args)
        finally:
            connections.close_all()

    return run


def leftovers(root: Path) -> list[Path]:
    """Temporary files or folders anywhere under `root`."""
    return [p for p in root.rglob(".partial-*")]


class QuietReporter(Reporter):
    """A Reporter that is not started: what is reported is written when it is flushed, if ever."""
