"""portal.log: written by several processes at once, rotated by the minutely task without losing or splitting a
record; the worker's failures land in it too."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django_q.models import Schedule

from backups import runs
from backups.models import Backup, BackupPolicy
from portal import tasks
from portal.models import ManagedCluster
from tests.clusters import free_port
from tests.conftest import PROJECT, wait_for

log = logging.getLogger("tests.logfiles")

SECOND_PROCESS = """
import logging, sys
import django
django.setup()
log = logging.getLogger("second.process")
for line in sys.stdin:
    log.warning("second process: %s", line.strip())
    print("written", flush=True)
"""


class SecondProcess:
    """Another Django process with the same log file open (a gunicorn worker, the task worker)."""

    def __init__(self, log_file: Path) -> None:
        env = {**os.environ, "PORTAL_LOG_FILE": str(log_file)}
        self.proc = subprocess.Popen([sys.executable, "-c", SECOND_PROCESS], cwd=PROJECT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def write(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "written\n"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def fill(size: int) -> None:
    for _ in range(size // 200 + 1):
        log.warning("filler %s", "x" * 200)


def test_rotation_keeps_the_old_file_and_every_process_moves_to_the_new_one(log_file, settings):
    settings.LOG_MAX_BYTES, settings.LOG_BACKUPS = 20_000, 2
    other = SecondProcess(log_file)
    try:
        other.write("before the rotation")
        log.warning("this process, before")
        assert tasks.rotate_log() is False  # small yet
        fill(settings.LOG_MAX_BYTES)
        assert tasks.rotate_log() is True

        log.warning("this process, after")
        other.write("after the rotation")
    finally:
        other.close()

    old, new = log_file.with_name("portal.log.1").read_text(), log_file.read_text()
    assert "second process: before the rotation" in old and "this process, before" in old and "filler" in old
    assert "second process: after the rotation" in new and "this process, after" in new
    assert "before" not in new and "filler" not in new
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o660
    assert tasks.rotate_log() is False  # the new file is small


def test_only_log_backups_old_files_are_kept(log_file, settings):
    settings.LOG_MAX_BYTES, settings.LOG_BACKUPS = 5_000, 2
    for round_ in range(4):
        log.warning("round %d", round_)
        fill(settings.LOG_MAX_BYTES)
        assert tasks.rotate_log() is True
    kept = sorted(path.name for path in log_file.parent.iterdir() if path.name.startswith("portal.log."))
    assert kept == ["portal.log.1", "portal.log.2", "portal.log.lock"]
    assert "round 3" in log_file.with_name("portal.log.1").read_text()
    assert "round 2" in log_file.with_name("portal.log.2").read_text()


def test_the_rotation_runs_every_minute(db):
    assert Schedule.objects.get(func="portal.tasks.rotate_log").cron == "* * * * *"


@pytest.fixture
def worker_log(tmp_path, monkeypatch) -> Path:
    """The log file of the worker the test starts."""
    monkeypatch.setenv("PORTAL_LOG_FILE", str(tmp_path / "worker" / "portal.log"))
    return tmp_path / "worker" / "portal.log"


@pytest.mark.django_db(transaction=True)
def test_a_failure_in_the_worker_lands_in_the_same_file(worker_log, backup_root, qcluster, dba):
    nowhere = ManagedCluster.objects.create(name="gone", host="127.0.0.1", port=free_port())  # nothing listens
    policy = BackupPolicy.objects.create(name="gone config", kind="config", cluster=nowhere)
    backup = runs.queue(policy, actor=dba, via="test")
    wait_for(lambda: Backup.objects.get(pk=backup.pk).status == Backup.Status.FAILED, timeout=60,
             message="the backup to fail")
    logged = wait_for(lambda: worker_log.exists() and worker_log.read_text(), message="the worker's log")
    record = logged[logged.index(f"Backup {backup.pk} failed"):]
    assert record.startswith(f"Backup {backup.pk} failed\nTraceback")
    assert "Connection refused" in record
