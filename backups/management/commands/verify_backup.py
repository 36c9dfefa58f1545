"""`manage.py verify_backup <id>`: verify a catalogued backup again now (checksum, restore, row counts)."""

from __future__ import annotations

import getpass
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from backups import verify
from backups.models import Backup
from portal import scratch
from portal.jobs import reporting


class Command(BaseCommand):
    help = ("Verify a backup now by restoring it into a scratch database on the scratch cluster and comparing row "
            "counts.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("backup", type=int, help="the backup's id")

    def handle(self, *args: Any, backup: int, **options: Any) -> None:
        chosen = Backup.objects.filter(pk=backup, status=Backup.Status.SUCCEEDED, expired_at=None).first()
        if chosen is None:
            raise CommandError(f"no good backup #{backup} in the catalogue")
        try:
            with reporting(chosen) as reporter:
                verified = verify.verify(chosen, reporter, actor=f"cli:{getpass.getuser()}")
        except scratch.Unavailable as exc:
            raise CommandError(f"backup #{chosen.pk} not verified: refused: {exc}") from exc
        chosen.refresh_from_db()
        if not verified:
            raise CommandError(f"backup #{chosen.pk} failed verification: {chosen.verification_error}")
        self.stdout.write(self.style.SUCCESS(
            f"backup #{chosen.pk} verified in {chosen.verification_seconds:.1f}s"))
