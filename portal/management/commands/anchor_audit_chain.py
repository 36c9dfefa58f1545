from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import anchors


class Command(BaseCommand):
    help = "Append the audit chain's head (newest event, hash, count) to the anchor file of every backup location."

    def handle(self, *args: Any, **options: Any) -> None:
        done = anchors.anchor("manage.py anchor_audit_chain", actor="system:manage")
        for where in done.written:
            self.stdout.write(f"anchored #{done.anchor.last_id} ({done.anchor.count} events) in {where}")
        for where, error in done.failed.items():
            self.stderr.write(f"not anchored in {where}: {error}")
        if done.failed or not done.written:
            raise CommandError("the anchor did not reach every location")
