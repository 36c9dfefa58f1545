"""manage.py schedule_drill <cluster>: a restore drill of a managed cluster on a schedule (weekly by default)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portal import audit
from portal.models import ManagedCluster, ManagedDatabase
from recovery.models import DrillSchedule


class Command(BaseCommand):
    help = ("Schedule a restore drill of a managed cluster (point-in-time by default: recovered into scratch, "
            "checked with pg_amcheck and row counts, its RTO measured), or change or disable its schedule.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("cluster", help="The managed cluster's name.")
        parser.add_argument("--kind", choices=DrillSchedule.Kind.values, default=DrillSchedule.Kind.PITR)
        parser.add_argument("--database", help="Logical drills: the managed database's name.")
        parser.add_argument("--cron", default="", help="Cron (default: DRILL_DEFAULT_SCHEDULE, weekly).")
        parser.add_argument("--disable", action="store_true", help="Keep the schedule, but do not run it.")

    def handle(self, *args, cluster: str, kind: str, database: str | None, cron: str, disable: bool,
               **options) -> None:
        try:
            managed = ManagedCluster.objects.get(name=cluster)
            db = managed.databases.get(name=database) if database else None
        except (ManagedCluster.DoesNotExist, ManagedDatabase.DoesNotExist):
            missing = f"no managed cluster {cluster!r}" + (f" with database {database!r}" if database else "")
            raise CommandError(missing) from None
        schedule = DrillSchedule.objects.filter(kind=kind, cluster=managed, database=db).first() or \
            DrillSchedule(kind=kind, cluster=managed, database=db)
        schedule.cron, schedule.enabled = cron, not disable
        try:
            schedule.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        schedule.save()
        audit.record("recovery.drill_schedule", actor="system:manage.py", obj=schedule, target=str(managed),
                     details={"kind": kind, "cron": schedule.effective_cron, "enabled": schedule.enabled})
        state = "scheduled" if schedule.enabled else "disabled"
        self.stdout.write(f"{schedule}: {state} ({schedule.effective_cron})")
