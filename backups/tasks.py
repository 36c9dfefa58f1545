"""Tasks of the backups app. Thin: a primary key in (or nothing), the domain code called, nothing else."""

from __future__ import annotations

import logging

from backups import pipeline, retention, runs
from backups.models import Backup, BackupCopy, BackupPolicy, WalArchive
from backups.storage import offsite
from backups.wal import catalog
from backups.wal import retention as walretention
from backups.wal import status as walstatus
from portal.jobs import run_job

log = logging.getLogger(__name__)


def run_backup(backup_pk: int) -> str | None:
    backup = run_job(Backup, backup_pk, pipeline.perform)
    return backup.status if backup else None


def scheduled_backup(policy_pk: int) -> str | None:
    """A policy's schedule came due: create the row as "Run now" does, and run it in this worker."""
    policy = BackupPolicy.objects.get(pk=policy_pk)
    try:
        backup = runs.create(policy, actor=f"schedule:{policy.name}", via="schedule")
    except runs.AlreadyRunning as exc:
        log.warning("%s", exc)
        return "skipped: already running"
    return run_backup(backup.pk)


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


def sample_wal_archives() -> int:
    """Every minute: rescan each archive folder, record the archiver's state and the achieved RPO."""
    for archive in WalArchive.objects.select_related("cluster"):
        walstatus.take_sample(archive)
        walstatus.prune_samples(archive)
    return WalArchive.objects.count()


def sample_wal_archive(archive_pk: int, actor: str) -> str:
    return walstatus.sample_now(WalArchive.objects.select_related("cluster").get(pk=archive_pk), actor)


def verify_wal_archives() -> int:
    return sum(len(catalog.verify(archive)) for archive in WalArchive.objects.select_related("cluster"))


def apply_wal_retention() -> int:
    return sum(walretention.apply(archive) for archive in WalArchive.objects.select_related("cluster"))
