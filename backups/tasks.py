"""Tasks of the backups app. Thin: each takes a primary key (or nothing) and calls the domain code."""

from __future__ import annotations

from backups import basebackup, walretention, walstatus
from backups.models import Backup, WalArchive
from portal.jobs import run_job


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
