from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal import audit, embedded
from portal.embedded import sample


class Command(BaseCommand):
    help = "Build the sample PAWS360 database on the embedded cluster (scale 1 is about 70 MB, 17 about 1 GB)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--scale", type=float, default=settings.SAMPLE_SCALE)
        parser.add_argument("--database", default=settings.SAMPLE_DATABASE)
        when_present = parser.add_mutually_exclusive_group()
        when_present.add_argument("--replace", action="store_true", help="drop the database first if it exists")
        when_present.add_argument("--if-missing", action="store_true", help="do nothing if the database exists")

    def handle(self, *args: Any, scale: float, database: str, replace: bool, if_missing: bool, **options: Any) -> None:
        target = embedded.target(database)
        if if_missing and sample.exists(target):
            return
        started = time.monotonic()
        try:
            counts = sample.build(target, scale, replace=replace, on_progress=self.stdout.write)
        except Exception as exc:
            audit.record("sample.seed", actor="system:seed", target=str(target), outcome=audit.Outcome.FAILURE,
                         details={"scale": scale, "error": str(exc)})
            raise CommandError(f"could not build the sample database {database!r}: {exc}") from exc
        audit.record("sample.seed", actor="system:seed", target=str(target), details={"counts": counts, "scale": scale})
        for table, rows in counts.items():
            self.stdout.write(f"{table:<24} {rows:>12,}")
        size = sample.size_pretty(target)
        self.stdout.write(self.style.SUCCESS(f"{database}: {size} in {time.monotonic() - started:.1f}s"))
