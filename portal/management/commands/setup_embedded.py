"""Everything `bin/portal up` needs inside Django: the sample database, the targets and an admin login."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand

from portal import audit, embedded
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

class Command(BaseCommand):
    help = ("Seed the sample database if missing, register the embedded managed cluster, let the apps set it up "
            "(archiving, the runbook's policies, drills: portal.embedded.SETUP_STEPS), make the admin login.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--scale", type=float, default=settings.SAMPLE_SCALE)

    def handle(self, *args, scale: float, **options) -> None:
        call_command("seed_paws360", scale=scale, if_missing=True, stdout=self.stdout)
        cluster = embedded.register()
        state = "reachable" if cluster.reachable else f"UNREACHABLE: {cluster.status_error}"
        self.stdout.write(f"managed cluster '{cluster.name}' ({cluster.host}:{cluster.port}): {state}")
        if cluster.reachable:
            for step in embedded.SETUP_STEPS:
                step(cluster, self.stdout)
        username, password, _ = ensure_admin()
        self.stdout.write(f"admin login: {username} / {password}  (kept in {settings.SECRETS_DIR}/admin-password)")
