"""System checks: settings a form cannot check (`manage.py check`, at every start), and what needs the portal's
database (`manage.py check --database default`, and every migrate)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from portal.models import ManagedCluster, PortalDatabaseServer, portal_system_identifier
from portal.schedules import validate_cron

HEALTH_TOKEN_MIN_LENGTH = 32


@register()
def drill_default_schedule(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        validate_cron(settings.DRILL_DEFAULT_SCHEDULE, settings.DRILL_SCHEDULE_MIN_MINUTES,
                      "DRILL_SCHEDULE_MIN_MINUTES")
    except ValidationError as exc:
        return [Error(f"DRILL_DEFAULT_SCHEDULE: {' '.join(exc.messages)}", id="portal.E001")]
    return []


@register(deploy=True)
def health_token(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.HEALTH_TOKEN and len(settings.HEALTH_TOKEN) < HEALTH_TOKEN_MIN_LENGTH:
        return [Warning(f"HEALTH_TOKEN is shorter than {HEALTH_TOKEN_MIN_LENGTH} characters; make a long random "
                        "one (python3 -c 'import secrets; print(secrets.token_urlsafe(32))').", id="portal.W001")]
    return []


@register(Tags.database)
def portal_database_not_managed(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Error]:
    """DATABASE_URL must not point at a server the portal manages: a recovery of it would roll back the catalog
    and the audit trail."""
    if not databases or "default" not in databases:
        return []
    try:
        own = portal_system_identifier()
        managed = list(ManagedCluster.objects.filter(system_identifier=own).values_list("name", flat=True))
    except DatabaseError:  # not migrated yet, or unreachable: other checks say so
        return []
    return [Error(f"DATABASE_URL points at the server of managed cluster {name!r}", id="portal.E002",
                  hint=PortalDatabaseServer.__doc__) for name in managed]
