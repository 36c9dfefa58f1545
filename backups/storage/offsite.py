"""Copies of a backup in every location of its policy, each checked by size and checksum and recorded.

The backup is written to the policy's primary (local) location; `copy_to_locations` then copies it to every
other location and reads each copy back before calling it present. A failed copy is recorded `failed` with
the reason: the backup stays good (its primary copy is intact) and the admin shows the missing copy.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from backups import leases
from backups.models import Backup, BackupCopy, StorageLocation
from backups.storage import backends, catalog_manifest
from portal import audit
from portal.jobs import Reporter

State = BackupCopy.State


def is_whole(backup: Backup) -> bool:
    """Written in full and not expired: succeeded, or still running (the pipeline copies before it finishes)."""
    return (backup.status in (Backup.Status.RUNNING, Backup.Status.SUCCEEDED) and backup.expired_at is None
            and bool(backup.path and backup.sha256))


def record_primary(backup: Backup) -> BackupCopy:
    """The backup's copy in its primary location, as the run that wrote it recorded it."""
    location = backup.policy.primary_location()
    good = is_whole(backup) or backup.status == Backup.Status.SUCCEEDED
    copy, _ = BackupCopy.objects.get_or_create(
        backup=backup, location=location,
        defaults={"key": backup.path, "state": State.PRESENT if good else State.FAILED,
                  "size_bytes": backup.size_bytes, "sha256": backup.sha256,
                  "copied_at": backup.finished or timezone.now(), "error": "" if good else "left by a failed run"},
    )
    return copy


def copy_to_locations(backup: Backup, reporter: Reporter | None = None, *,
                      actor: audit.Actor = None) -> list[BackupCopy]:
    """Copy a backup from its primary location to every other location of its policy: a succeeded one, or
    one whose run is finishing (the pipeline calls this with its reporter once the file is whole). Copies
    already present, or being made by another worker, are left alone; failed ones are tried again."""
    if not is_whole(backup):
        raise ValueError(f"{backup} is not a whole backup (status {backup.status}, expired {backup.expired_at})")
    primary = record_primary(backup)
    others = backup.policy.locations.exclude(pk=primary.location_id).order_by("name")
    copies = [primary]
    if others:
        with leases.hold(backup, "offsite-copy"):
            copies += [copy_one(backup, location, reporter, actor=actor) for location in others]
    return copies


def claim(copy: BackupCopy) -> bool:
    """`pending`/`failed` -> `copying` for this worker; a copy left `copying` by a worker that died (older
    than the longest a task may run) may be claimed again."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.TASK_TIMEOUT)
    claimable = Q(state__in=[State.PENDING, State.FAILED]) | Q(state=State.COPYING, started__lt=stale)
    return BackupCopy.objects.filter(claimable, pk=copy.pk).update(state=State.COPYING, started=now, error="") == 1


def copy_one(backup: Backup, location: StorageLocation, reporter: Reporter | None = None, *,
             actor: audit.Actor = None) -> BackupCopy:
    copy, _ = BackupCopy.objects.get_or_create(backup=backup, location=location, defaults={"key": backup.path})
    if not claim(copy):
        copy.refresh_from_db()
        return copy
    store = None
    try:
        store = backends.for_location(location)
        progress = _progress(reporter, backup, location)
        store.put(backup.local_path, copy.key, sha256=backup.sha256, progress=progress)
        _expect(store.check(copy.key), backup, store.where(copy.key))
        _put_companions(store, backup)
    except Exception as exc:  # any failure is the copy's outcome, recorded; the backup itself stays good
        error = str(exc) if isinstance(exc, backends.StorageError) else f"{type(exc).__name__}: {exc}"
        _finish(copy, State.FAILED, error=error)
    else:
        now = timezone.now()
        _finish(copy, State.PRESENT, size_bytes=backup.size_bytes, sha256=backup.sha256, copied_at=now, checked_at=now)
    outcome = audit.Outcome.SUCCESS if copy.state == State.PRESENT else audit.Outcome.FAILURE
    where = store.where(copy.key) if store else location.name
    audit.record("backup.copy", actor=actor, obj=backup, target=f"{backup} -> {location}", outcome=outcome,
                 details={"location": location.name, "where": where, "size_bytes": copy.size_bytes,
                          "sha256": copy.sha256, "error": copy.error})
    if reporter:
        reporter.log(f"copy to {location}: {copy.state}" + (f" ({copy.error})" if copy.error else ""))
    return copy


def _put_companions(store: backends.Storage, backup: Backup) -> None:
    """The files taken beside the backup (its cluster globals) and its catalog manifest go with it, checked the
    same way."""
    root = backup.policy.primary_root()
    for path, sha256 in [*backup.companions(), *catalog_manifest.companion(backup)]:
        store.put(root / path, path, sha256=sha256)
        found = store.check(path)
        if found is None or found.sha256 != sha256:
            raise backends.checksum_mismatch(store.where(path), sha256, found.sha256 if found else "nothing")


def _progress(reporter: Reporter | None, backup: Backup, location: StorageLocation) -> backends.Progress | None:
    if reporter is None:
        return None
    return backends.ByteCounter(lambda done: reporter.progress(done, backup.size_bytes, f"copying to {location}"))


def _expect(found: backends.Stat | None, backup: Backup, where: str) -> None:
    if found is None:
        raise backends.StorageError(f"{where}: not found when read back")
    if backup.size_bytes is not None and found.size != backup.size_bytes:
        raise backends.StorageError(f"{where}: size mismatch: expected {backup.size_bytes} bytes, found {found.size}")
    if found.sha256 != backup.sha256:
        raise backends.checksum_mismatch(where, backup.sha256, found.sha256)


def _finish(copy: BackupCopy, state: str, **fields: object) -> None:
    fields = {"state": state, "error": "", **fields}
    for name, value in fields.items():
        setattr(copy, name, value)
    BackupCopy.objects.filter(pk=copy.pk).update(**fields)


def check_copy(copy: BackupCopy, *, actor: audit.Actor = None) -> BackupCopy:
    """Read a copy back in full and compare its size and sha256 with the catalog's."""
    store = backends.for_location(copy.location)
    try:
        _expect(store.check(copy.key), copy.backup, store.where(copy.key))
    except backends.StorageError as exc:
        _finish(copy, State.FAILED, error=str(exc), checked_at=timezone.now())
    else:
        _finish(copy, State.PRESENT, checked_at=timezone.now())
    audit.record("backup.copy.check", actor=actor, obj=copy.backup, target=str(copy),
                 outcome=audit.Outcome.SUCCESS if copy.state == State.PRESENT else audit.Outcome.FAILURE,
                 details={"location": copy.location.name, "where": store.where(copy.key), "error": copy.error})
    return copy


def delete_copy(copy: BackupCopy, *, actor: audit.Actor = None, reason: str = "") -> bool:
    """Remove one copy's file or object; the copy is `deleted`, or keeps its state with the error."""
    try:
        store = backends.for_location(copy.location)
        where = store.where(copy.key)
        if copy.backup.catalog_manifest_path:  # first: no manifest outlives the files it describes
            store.delete(copy.backup.catalog_manifest_path)
        store.delete(copy.key)
        for path, _ in copy.backup.companions():
            store.delete(path)
    except backends.StorageError as exc:
        BackupCopy.objects.filter(pk=copy.pk).update(error=f"delete failed: {exc}")
        audit.record("backup.copy.delete", actor=actor, obj=copy.backup, target=str(copy),
                     outcome=audit.Outcome.FAILURE, details={"location": copy.location.name, "error": str(exc)})
        return False
    _finish(copy, State.DELETED)
    audit.record("backup.copy.delete", actor=actor, obj=copy.backup, target=str(copy),
                 details={"location": copy.location.name, "where": where, "reason": reason})
    return True
