"""System checks that need the portal's database (`manage.py check --database default`, and every migrate)."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, register
from django.db import DatabaseError

from portal.models import ManagedCluster, PortalDatabaseServer, portal_system_identifier


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
    return [Error(f"DATABASE_URL points at the server of managed cluster {name!r}", id="portal.E001",
                  hint=PortalDatabaseServer.__doc__) for name in managed]
