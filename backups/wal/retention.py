"""WAL retention: segments older than the archive's retention_days (7 by default) are removed, except any
segment at or after the first segment (`start_wal`) of the oldest kept base backup, on segment-number order
(timelines continue each other's numbering). Timeline history files are tiny and always kept. A base backup
running now protects everything. One audit event per removal batch."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from backups.models import Backup, BackupPolicy, WalArchive, WalSegment
from backups.wal import walarchive
from backups.wal.window import kept_base_backups
from portal import audit


def protected_from(archive: WalArchive) -> int | None:
    """The lowest segment number retention must keep; None when no kept base backup needs any."""
    running = Backup.objects.filter(cluster=archive.cluster, kind=BackupPolicy.Kind.BASE,
                                    status__in=[Backup.Status.QUEUED, Backup.Status.RUNNING])
    if running.exists():
        return -1
    segnos = [walarchive.parse_segment(b.start_wal, archive.segment_size)[1]
              for b in kept_base_backups(archive.cluster)]
    return min(segnos) if segnos else None


def prune_stream(archive: WalArchive) -> int:
    """Streamed segments that the archive holds too are no longer needed in stream/."""
    if not archive.stream_folder.is_dir():
        return 0
    archived = set(archive.segments.filter(kind="segment", state=WalSegment.State.PRESENT)
                   .values_list("name", flat=True))
    removed = 0
    for path in archive.stream_folder.iterdir():
        if path.name in archived:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def apply(archive: WalArchive) -> int:
    """Remove what retention allows; returns how many files were removed."""
    prune_stream(archive)
    cutoff = timezone.now() - timedelta(days=archive.retention_days)
    keep_from = protected_from(archive)
    candidates = archive.segments.filter(arrived_at__lt=cutoff).exclude(kind="history").exclude(
        state=WalSegment.State.REMOVED)
    if keep_from is not None:
        candidates = candidates.filter(Q(segno__lt=keep_from))
    removed: list[WalSegment] = []
    freed = 0
    for segment in candidates.order_by("segno"):
        path = archive.folder / segment.stored_name
        try:
            freed += path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass
        removed.append(segment)
    if not removed:
        return 0
    now = timezone.now()
    WalSegment.objects.filter(pk__in=[s.pk for s in removed]).update(state=WalSegment.State.REMOVED, removed_at=now)
    audit.record("wal.retention", actor="system:wal-retention", obj=archive, target=str(archive.cluster),
                 details={"removed": len(removed), "bytes": freed, "first": removed[0].name, "last": removed[-1].name,
                          "older_than": cutoff.isoformat(),
                          "kept_from_segno": keep_from})
    return len(removed)
