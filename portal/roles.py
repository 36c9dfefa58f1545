"""Who may do what. Three groups, created by migration 0003 and given their permissions here after
every migrate, so that models added later are covered without a new data migration.

- Auditor: sees everything, changes nothing.
- Operator: sees everything; runs backups and maintenance; requests recoveries.
- DBA: everything, including approving recoveries and controlling clusters.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

DBA, OPERATOR, AUDITOR = "DBA", "Operator", "Auditor"
ROLES = (DBA, OPERATOR, AUDITOR)
PORTAL_APPS = ("portal", "backups", "recovery", "maintenance", "django_q")

# Beyond viewing, what an operator may do. Model permissions of later apps are added here by name.
OPERATOR_PERMISSIONS = {
    "portal.run_backup",
    "portal.run_maintenance",
    "portal.request_recovery",
    "backups.add_backup",
    "recovery.add_recoveryrequest",
    "maintenance.add_maintenancerun",
}


def _perms(query: Q) -> list[Permission]:
    return list(Permission.objects.filter(query).select_related("content_type"))


def _named(names: set[str]) -> Q:
    query = Q(pk__in=[])
    for name in names:
        app_label, codename = name.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    return query


def sync_role_permissions() -> None:
    in_portal = Q(content_type__app_label__in=PORTAL_APPS)
    viewing = in_portal & Q(codename__startswith="view_")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    groups[AUDITOR].permissions.set(_perms(viewing))
    groups[OPERATOR].permissions.set(_perms(viewing | _named(OPERATOR_PERMISSIONS)))
    groups[DBA].permissions.set(_perms(in_portal))
