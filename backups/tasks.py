"""Tasks of the backup app. Thin: each takes a primary key and calls the domain code."""

from __future__ import annotations

from backups import offsite, retention
from backups.models import Backup, BackupCopy


def copy_backup(backup_pk: int, actor: str = "system") -> list[str]:
    """Copy a backup to every location of its policy that lacks a good copy (the "retry copies" action)."""
    copies = offsite.copy_to_locations(Backup.objects.get(pk=backup_pk), actor=actor)
    return [f"{copy.location}: {copy.state}" for copy in copies]


def check_copy(copy_pk: int, actor: str = "system") -> str:
    copy = offsite.check_copy(BackupCopy.objects.select_related("backup", "location").get(pk=copy_pk), actor=actor)
    return f"{copy}: {copy.state} {copy.error}".strip()


def apply_retention() -> int:
    """The scheduled run: expire what every policy allows. Returns how many backups were expired."""
    return sum(len(result.expired) for result in retention.apply_all())
