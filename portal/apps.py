from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _after_migrate(sender: AppConfig, **kwargs: object) -> None:
    from portal.roles import sync_role_permissions
    from portal.schedules import sync_system_schedules

    sync_role_permissions()
    sync_system_schedules()


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from django.contrib import admin

        from portal import (
            adminguard,
            auth_audit,
            checks,  # noqa: F401 (registers the system checks)
        )

        # Once, after the last app: by then every app's permissions exist.
        post_migrate.connect(_after_migrate, dispatch_uid="portal.after_migrate")
        auth_audit.connect()
        # The admin registered every app's pages when it started, before this app.
        adminguard.guard(admin.site)
