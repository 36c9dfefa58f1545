"""A backup in use — verified, restored, copied — is leased; retention never expires a leased backup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.utils import timezone

from backups.models import Backup, BackupLease

DEFAULT_TTL = timedelta(hours=12)


@contextmanager
def hold(backup: Backup, holder: str, ttl: timedelta = DEFAULT_TTL) -> Iterator[BackupLease]:
    """Lease `backup` while the block runs. The expiry covers a holder that died without releasing."""
    lease = BackupLease.objects.create(backup=backup, holder=holder, expires=timezone.now() + ttl)
    try:
        yield lease
    finally:
        BackupLease.objects.filter(pk=lease.pk).delete()


def is_leased(backup: Backup) -> bool:
    return backup.leases.filter(expires__gt=timezone.now()).exists()
