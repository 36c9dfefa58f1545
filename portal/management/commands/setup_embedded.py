"""Everything `bin/portal up` needs inside Django: the sample database, the targets and an admin login."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand

from backups import defaults, locations, walstatus
from portal import audit, embedded
from portal.models import ManagedCluster
from portal.roles import DBA

ADMIN_USERNAME = "admin"


def admin_password() -> str:
    """The admin's password, made once and kept in var/secrets (mode 0600), so `up` can print it again."""
    path = settings.SECRETS_DIR / "admin-password"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18))
    return path.read_text().strip()


def ensure_admin() -> tuple[str, str, bool]:
    password = admin_password()
    user, created = User.objects.get_or_create(username=ADMIN_USERNAME, defaults={"is_staff": True})
    if created or not user.check_password(password):
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get(name=DBA))
        audit.record("user.create_admin", actor="system:setup", obj=user, target=user.username)
    return ADMIN_USERNAME, password, created

LOGICAL_DRILL_CRON = "0 5 * * 0"  # an hour after the point-in-time drill (DRILL_DEFAULT_SCHEDULE): not both at once


class Command(BaseCommand):
    help = "Seed the sample database if missing, register the embedded cluster, make the admin login."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--scale", type=float, default=settings.SAMPLE_SCALE)

    def protect_embedded(self, cluster: ManagedCluster) -> None:
        """The embedded default comes up archiving its WAL (manage.py configure_archiving embedded), with the
        runbook's backup policies, each with a first backup queued, and weekly restore drills (manage.py
        schedule_drill): point-in-time of the cluster, and an hour later logical of the sample database."""
        from recovery.models import DrillSchedule

        self.stdout.write(locations.initialise_default(actor="system:setup"))
        call_command("configure_archiving", cluster.name, stdout=self.stdout)
        walstatus.take_sample(cluster.wal_archive)
        created = defaults.ensure_runbook_policies(cluster.databases.get(name=settings.SAMPLE_DATABASE))
        defaults.first_runs(created, actor="system:setup")
        for policy in created:
            self.stdout.write(f"backup policy '{policy}': {policy.schedule}, kept {policy.retention_days} days")
        if not DrillSchedule.objects.filter(cluster=cluster, kind=DrillSchedule.Kind.PITR).exists():
            call_command("schedule_drill", cluster.name, stdout=self.stdout)
        if not DrillSchedule.objects.filter(cluster=cluster, kind=DrillSchedule.Kind.LOGICAL).exists():
            call_command("schedule_drill", cluster.name, kind=DrillSchedule.Kind.LOGICAL,
                         database=settings.SAMPLE_DATABASE, cron=LOGICAL_DRILL_CRON, stdout=self.stdout)

    def handle(self, *args, scale: float, **options) -> None:
        call_command("seed_paws360", scale=scale, if_missing=True, stdout=self.stdout)
        cluster = embedded.register()
        state = "reachable" if cluster.reachable else f"UNREACHABLE: {cluster.status_error}"
        self.stdout.write(f"managed cluster '{cluster.name}' ({cluster.host}:{cluster.port}): {state}")
        if cluster.reachable:
            self.protect_embedded(cluster)
        username, password, _ = ensure_admin()
        self.stdout.write(f"admin login: {username} / {password}  (kept in {settings.SECRETS_DIR}/admin-password)")
