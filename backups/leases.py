"""A backup in use — verified, restored, copied — is leased; retention never expires a leased backup.

Taking a lease and expiring a backup both lock the backup's row first, so they cannot cross: either the
lease exists when retention looks (and the backup is kept), or retention expired it first (and `hold`
refuses with `BackupExpired`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from backups.models import Backup, BackupLease

DEFAULT_TTL = timedelta(hours=12)


class BackupExpired(Exception):
    """The backup was expired by retention: its files are gone or going."""


@contextmanager
def hold(backup: Backup, holder: str, ttl: timedelta = DEFAULT_TTL) -> Iterator[BackupLease]:
    """Lease `backup` while the block runs. The expiry covers a holder that died without releasing."""
    with transaction.atomic():
        expired_at = Backup.objects.select_for_update().values_list("expired_at", flat=True).get(pk=backup.pk)
        if expired_at is not None:
            raise BackupExpired(f"{backup} was expired by retention at {expired_at:%Y-%m-%d %H:%M:%S %Z}")
        lease = BackupLease.objects.create(backup=backup, holder=holder, expires=timezone.now() + ttl)
    try:
        yield lease
    finally:
        BackupLease.objects.filter(pk=lease.pk).delete()


def is_leased(backup: Backup) -> bool:
    return backup.leases.filter(expires__gt=timezone.now()).exists()


def holders(backup: Backup) -> list[str]:
    return list(backup.leases.filter(expires__gt=timezone.now()).values_list("holder", flat=True))
