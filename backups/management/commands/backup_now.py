"""`manage.py backup_now <policy>`: run a policy's backup now, in this process, with a progress bar.

The same pipeline as "Run now" in the admin and the schedules: the row is created the same way (one run per
policy at a time), the outcome is recorded and audited the same way. Exit code 0 only for a good backup.
"""

from __future__ import annotations

import getpass
import sys
import threading
import time
from argparse import ArgumentParser
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from backups import pipeline, runs
from backups.models import Backup, BackupPolicy
from backups.progress import progress_data
from portal.jobs import run_job

BAR_WIDTH = 30


def find_policy(name_or_id: str) -> BackupPolicy:
    policies = BackupPolicy.objects.filter(name=name_or_id)
    if not policies and name_or_id.isdigit():
        policies = BackupPolicy.objects.filter(pk=int(name_or_id))
    policy = policies.first()
    if policy is None:
        known = ", ".join(BackupPolicy.objects.values_list("name", flat=True)) or "none yet"
        raise CommandError(f"no backup policy {name_or_id!r} (policies: {known})")
    return policy


def render(data: dict[str, Any]) -> str:
    percent = 100 if data["finished"] else data["percent"]
    filled = BAR_WIDTH * (percent or 0) // 100
    bar = "#" * filled + "-" * (BAR_WIDTH - filled) if percent is not None else "~" * BAR_WIDTH
    return f"[{bar}] {data['label']}".replace("\xa0", " ")[:160]


def run(pk: int) -> None:
    """The worker's part, in a thread of this process; the main thread draws the progress."""
    try:
        run_job(Backup, pk, pipeline.perform)
    finally:
        connection.close()


class ProgressLine:
    """One line redrawn in place on a terminal; a line every ten seconds otherwise (cron mails stay short)."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty = out, out.isatty()
        self.last_printed = 0.0

    def show(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.out.write("\r\033[K" + text + ("\n" if final else ""))
            self.out.flush()
        elif final or time.monotonic() - self.last_printed >= 10:
            self.out.write(text + "\n")
            self.last_printed = time.monotonic()


class Command(BaseCommand):
    help = "Run a backup policy now, in this process, showing its progress."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("policy", help="the policy's name or id")
        parser.add_argument("--quiet", action="store_true", help="no progress; only the outcome")

    def handle(self, *args: Any, policy: str, quiet: bool, **options: Any) -> None:
        chosen = find_policy(policy)
        try:
            backup = runs.create(chosen, actor=f"cli:{getpass.getuser()}", via="manage.py backup_now")
        except runs.AlreadyRunning as exc:
            raise CommandError(str(exc)) from exc
        worker = threading.Thread(target=run, args=(backup.pk,), daemon=True)
        worker.start()
        line = ProgressLine(sys.stderr)
        while worker.is_alive():
            worker.join(timeout=0.5)
            if not quiet:
                backup.refresh_from_db()
                line.show(render(progress_data(backup)))
        backup.refresh_from_db()
        if not quiet:
            line.show(render(progress_data(backup)), final=True)
        self.report(backup)

    def report(self, backup: Backup) -> None:
        if backup.status != Backup.Status.SUCCEEDED:
            raise CommandError(f"backup #{backup.pk} {backup.status}: {backup.error}")
        self.stdout.write(self.style.SUCCESS(
            f"backup #{backup.pk} {backup.name}: {backup.size_bytes} bytes, sha256 {backup.sha256}, "
            f"{backup.get_verification_display().lower()}"))
        self.stdout.write(str(backup.local_path))
