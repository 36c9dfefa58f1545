"""Which backup a logical recovery restores.

Good means: a full logical backup that succeeded, was verified by restore, and was not removed by retention.
The default is the newest good backup of the database whose files still match their catalogued checksum; a
backup chosen by name must be good and match, or the recovery is refused with the reason, both when it is
requested (a form error) and again when it runs. A backup whose files no longer match is marked damaged
(`backups.verify.mark_damaged`: no longer verified), so no later choice reads it again.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet

from backups import verify
from backups.models import Backup, BackupPolicy
from backups.restore import BackupMissing, ChecksumMismatch, check_checksum, check_present
from portal.models import ManagedCluster, ManagedDatabase


class Unusable(Exception):
    """This backup cannot serve the recovery; the message says why."""


def good_backups(database: ManagedDatabase | None = None, cluster: ManagedCluster | None = None) -> QuerySet[Backup]:
    """Good logical backups, newest first."""
    backups = Backup.objects.filter(kind=BackupPolicy.Kind.LOGICAL, status=Backup.Status.SUCCEEDED,
                                    verification=Backup.Verification.VERIFIED, expired_at__isnull=True)
    if database is not None:
        backups = backups.filter(database=database)
    if cluster is not None:
        backups = backups.filter(cluster=cluster)
    return backups.select_related("policy", "database", "cluster").order_by("-created")


def refusal(backup: Backup, database: ManagedDatabase | None = None) -> str:
    """Why the catalogue says `backup` cannot serve a logical recovery of `database`; "" if it can."""
    name = f"backup #{backup.pk} ({backup})"
    if backup.kind != BackupPolicy.Kind.LOGICAL:
        return f"{name} is a {backup.get_kind_display().lower()} backup; this recovery needs a full logical backup"
    if database is not None and backup.database_id != database.pk:
        return f"{name} is a backup of {backup.database}, not of {database}"
    if backup.status != Backup.Status.SUCCEEDED:
        return f"{name} did not succeed ({backup.get_status_display().lower()}{_colon(backup.error)})"
    if backup.expired_at is not None:
        return f"{name} was removed by retention on {backup.expired_at:%Y-%m-%d %H:%M} UTC"
    if backup.verification != Backup.Verification.VERIFIED:
        state = backup.get_verification_display().lower()
        return f"{name} is not verified by restore ({state}{_colon(backup.verification_error)}); choose a verified one"
    return ""


def _colon(text: str) -> str:
    return f": {text.splitlines()[0][:300]}" if text else ""


def check(backup: Backup, database: ManagedDatabase | None = None, *, full: bool = True) -> None:
    """Raise `Unusable` unless the catalogue calls `backup` good and its files match their checksum (`full`: read
    whole, in the worker) or are there with their size (a request form)."""
    reason = refusal(backup, database)
    if reason:
        raise Unusable(reason)
    try:
        (check_checksum if full else check_present)(backup)
    except BackupMissing as exc:
        raise Unusable(f"backup #{backup.pk} ({backup}) is corrupt: {exc}") from exc
    except ChecksumMismatch as exc:
        verify.mark_damaged(backup, str(exc), found_by="a recovery's checksum check", actor="system:recovery")
        raise Unusable(f"backup #{backup.pk} ({backup}) is corrupt: {exc}") from exc


def newest(database: ManagedDatabase | None = None, cluster: ManagedCluster | None = None) -> Backup | None:
    """The newest good backup by the catalogue (its files are not read)."""
    return good_backups(database, cluster).first()


def resolve(backup: Backup | None, database: ManagedDatabase | None, cluster: ManagedCluster | None,
            say: Callable[[str], None], *, full: bool = True) -> Backup:
    """The chosen backup, checked; with none chosen, the newest good one whose files match (saying which newer
    ones were passed over, and why). `full=False` for a request form: presence and size, not the whole sha256."""
    if backup is not None:
        check(backup, database, full=full)
        return backup
    for candidate in good_backups(database, cluster):
        try:
            check(candidate, database, full=full)
        except Unusable as exc:
            say(f"passed over: {exc}")
            continue
        return candidate
    what = database or cluster
    raise Unusable(f"no verified logical backup of {what} can serve: take a backup, or verify one")
