"""Tasks of the backups app. Thin: each takes a primary key (or nothing) and calls the domain code."""

from __future__ import annotations

from backups import basebackup, offsite, retention, walretention, walstatus
from backups.models import Backup, BackupCopy, WalArchive
from portal.jobs import run_job


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


def take_base_backup(backup_pk: int) -> None:
    run_job(Backup, backup_pk, basebackup.take_base_backup)


def run_base_policy(policy_pk: int) -> int | None:
    """The schedule of a base backup policy: create the row, then take it."""
    backup = basebackup.queue_for_policy(policy_pk, triggered_by=f"schedule:base policy {policy_pk}")
    if backup is not None:
        take_base_backup(backup.pk)
    return backup.pk if backup else None


def sample_wal_archives() -> int:
    """Every minute: rescan each archive folder, record the archiver's state and the achieved RPO."""
    for archive in WalArchive.objects.select_related("cluster"):
        walstatus.take_sample(archive)
        walstatus.prune_samples(archive)
    return WalArchive.objects.count()


def verify_wal_archives() -> int:
    from backups import walcatalog

    return sum(len(walcatalog.verify(archive)) for archive in WalArchive.objects.select_related("cluster"))


def apply_wal_retention() -> int:
    return sum(walretention.apply(archive) for archive in WalArchive.objects.select_related("cluster"))
