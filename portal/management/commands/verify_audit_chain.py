from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import anchors, audit_privileges
from portal.audit import verify_chain


class Command(BaseCommand):
    help = ("Check the audit trail: its hash chain (the first broken row), the anchors kept in the backup locations "
            "(an emptied table, a deleted tail, a rewritten and re-hashed row) and who may change it.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain()
        found, unreadable = anchors.anchors()
        problems = [*unreadable, *anchors.check(found), *audit_privileges.problems()]
        if not report.intact:
            problems.insert(0, f"audit chain broken at event #{report.first_broken_id}: {report.reason} "
                               f"({report.checked} events before it are intact)")
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"audit trail NOT intact: {len(problems)} problem(s)")
        stores = len({anchor.where for anchor in found})
        self.stdout.write(self.style.SUCCESS(
            f"audit chain intact: {report.checked} events, consistent with {len(found)} anchor(s) in {stores} "
            "location(s); the portal's role may only INSERT and SELECT it"))
