"""The recoverable window of a cluster: the moments a point-in-time recovery can reach.

From a kept base backup (succeeded, not expired, not failed verification) onwards, recovery needs every WAL
segment from the backup's first one (`start_wal`) without a gap. It can reach any moment from the end of the
backup (`finished`: consistency is reached by then) to the newest commit in the unbroken run of segments
after it (PostgreSQL 15 refuses a recovery_target_time past the last commit it can replay). The window of
the issue is the one that starts at the oldest kept base backup; `ranges` also lists what later backups
reach beyond a gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Max

from backups.models import Backup, BackupPolicy, WalArchive, WalSegment
from backups.wal import catalog, walarchive
from portal.models import ManagedCluster


@dataclass
class Range:
    backup: Backup
    start: datetime
    end: datetime
    last_segment: str
    wal_until: datetime | None  # when the last segment of the run arrived

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M:%S} .. {self.end:%Y-%m-%d %H:%M:%S} (from {self.backup})"


@dataclass
class Window:
    start: datetime | None
    end: datetime | None
    gaps: list[catalog.Gap] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)

    @property
    def recoverable(self) -> bool:
        return self.start is not None

    def gap_after(self, covered: Range) -> catalog.Gap | None:
        """The gap where `covered` ends: WAL missing right after its last segment (None: it ends at the newest)."""
        if not self.gaps:
            return None
        _, last = walarchive.parse_segment(covered.last_segment, self.gaps[0].segment_size)
        return next((gap for gap in self.gaps if gap.first == last + 1), None)

    def as_tuple(self) -> tuple[datetime | None, datetime | None, list[catalog.Gap]]:
        return self.start, self.end, self.gaps

    def __str__(self) -> str:
        if not self.recoverable:
            return "no point-in-time recovery is possible: no kept base backup with its WAL"
        when = "%Y-%m-%d %H:%M:%S %Z"
        return f"you can recover to any moment between {self.start:{when}} and {self.end:{when}}"


def kept_base_backups(cluster: ManagedCluster):
    """What retention keeps and recovery may offer, oldest first."""
    return (Backup.objects.filter(cluster=cluster, kind=BackupPolicy.Kind.BASE, status=Backup.Status.SUCCEEDED,
                                  expired_at__isnull=True)
            .exclude(start_wal="").exclude(verification=Backup.Verification.FAILED).order_by("finished"))


def range_of(archive: WalArchive, backup: Backup) -> Range | None:
    _, first = walarchive.parse_segment(backup.start_wal, archive.segment_size)
    last = catalog.newest_contiguous(archive, first)
    if last is None:
        return None
    last_commit = (archive.segments.filter(kind="segment", state=WalSegment.State.PRESENT,
                                           segno__gte=first, segno__lte=last.segno)
                   .aggregate(newest=Max("last_commit_at"))["newest"])
    end = max(backup.finished, last_commit) if last_commit else backup.finished
    return Range(backup, backup.finished, end, last.name, last.arrived_at)


def recoverable_window(cluster: ManagedCluster) -> Window:
    """(start, end, gaps) for the recovery work: "you can recover to any moment between start and end"."""
    archive = WalArchive.objects.filter(cluster=cluster).first()
    if archive is None:
        return Window(None, None)
    gaps = catalog.find_gaps(archive)
    ranges = [r for r in (range_of(archive, b) for b in kept_base_backups(cluster)) if r is not None]
    merged: list[Range] = []
    for candidate in ranges:
        if merged and candidate.start <= merged[-1].end:
            if candidate.end > merged[-1].end:
                merged[-1].end, merged[-1].last_segment = candidate.end, candidate.last_segment
                merged[-1].wal_until = candidate.wal_until
        else:
            merged.append(candidate)
    if not merged:
        return Window(None, None, gaps)
    return Window(merged[0].start, merged[0].end, gaps, merged)
