"""`manage.py backup_now <policy>`: the same pipeline, in-process, with a progress bar on the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from backups.models import Backup, BackupPolicy
from portal.models import AuditEvent

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_the_policy_and_prints_the_outcome(logical_policy, capsys):
    call_command("backup_now", logical_policy.name)
    out, err = capsys.readouterr()
    backup = Backup.objects.get()
    assert (backup.status, backup.verification) == ("succeeded", "verified")
    assert backup.triggered_by.startswith("cli:")
    assert f"backup #{backup.pk} {backup.name}" in out and backup.sha256 in out and "verified" in out
    assert "[" + "#" * 30 + "] Succeeded" in err
    assert AuditEvent.objects.filter(action="backup.request", details__via="manage.py backup_now").exists()


def test_it_redraws_its_progress_line_on_a_terminal(logical_policy, backup_root):
    """Under a real pseudo-terminal, the line is redrawn in place while the backup runs."""
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "TERM": "dumb"}
    script = ["script", "-qec", f"{sys.executable} manage.py backup_now {logical_policy.pk}", "/dev/null"]
    result = subprocess.run(script, cwd=PROJECT, env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout
    frames = [f for f in result.stdout.decode().split("\r\x1b[K") if f.startswith("[")]
    assert len(frames) >= 2 and frames[-1].startswith("[" + "#" * 30 + "] Succeeded")


def test_an_unknown_policy_names_the_known_ones(logical_policy):
    with pytest.raises(CommandError, match="no backup policy 'nightly' \\(policies: paws360 full\\)"):
        call_command("backup_now", "nightly")


def test_a_failed_backup_is_a_failed_command(sample_database, backup_root, settings):
    policy = BackupPolicy.objects.create(name="appdata", kind="appdata", cluster=sample_database.cluster)
    settings.BACKUP_APP_DATA_DIRS = ["/nonexistent/uploads"]
    with pytest.raises(CommandError, match=r"backup #\d+ failed: BACKUP_APP_DATA_DIRS names /nonexistent/uploads"):
        call_command("backup_now", policy.name, quiet=True)


def test_it_refuses_while_the_policy_is_already_running(logical_policy):
    Backup.objects.create(policy=logical_policy, kind="logical", cluster=logical_policy.cluster,
                          database=logical_policy.database, status="running")
    with pytest.raises(CommandError, match="already queued or running"):
        call_command("backup_now", logical_policy.name)
