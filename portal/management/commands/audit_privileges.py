from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import audit_privileges


class Command(BaseCommand):
    help = ("--sql: the SQL a superuser runs in the portal's database so that the audit table belongs to "
            "AUDIT_OWNER_ROLE and the portal's role may only INSERT and SELECT it. --check (the default): what the "
            "portal's role may still do to it; exit code 0 only when nothing.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sql", action="store_true")

    def handle(self, *args: Any, sql: bool, **options: Any) -> None:
        if sql:
            self.stdout.write(audit_privileges.grant_sql(audit_privileges.app_role()), ending="")
            return
        problems = audit_privileges.problems()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError("the audit table is not protected from the portal's own role: run the output of "
                               "`manage.py audit_privileges --sql` as a superuser in the portal's database")
        self.stdout.write(self.style.SUCCESS("the portal's role may only INSERT and SELECT the audit table"))
