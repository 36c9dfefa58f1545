"""The catalog of a WAL archive: what is in the folder, whether it is whole, and what each segment holds.

`scan()` records each new file (name, timeline, segment number, size, sha256 of the stored bytes, arrival
time, the newest commit in it), notices files that vanished, and cleans up temporary files that a killed
archive command left behind. `verify()` re-hashes segments to find damage. `find_gaps()` lists the segment
numbers missing (or damaged) between the oldest and the newest segment kept.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from backups import files
from backups.models import WalArchive, WalSegment
from backups.wal import walarchive
from portal import audit, pg, programs

COMMIT_RE = re.compile(r"desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
STALE_TEMP_SECONDS = 3600
USABLE = (WalSegment.State.PRESENT,)


@dataclass
class ScanResult:
    new: int = 0
    vanished: int = 0
    corrupt: int = 0


@dataclass(frozen=True)
class Gap:
    """Segment numbers first..last (inclusive) are not usable in the archive."""

    timeline: int
    first: int
    last: int
    segment_size: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def first_name(self) -> str:
        return walarchive.segment_name(self.timeline, self.first, self.segment_size)

    @property
    def last_name(self) -> str:
        return walarchive.segment_name(self.timeline, self.last, self.segment_size)

    def __str__(self) -> str:
        if self.count == 1:
            return f"{self.first_name} missing"
        return f"{self.count} segments missing: {self.first_name} .. {self.last_name}"


def archived_files(folder: Path) -> dict[str, Path]:
    """PostgreSQL's name -> the stored file, for every WAL file in the folder."""
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        name = path.name.removesuffix(walarchive.ZSTD_SUFFIX)
        if walarchive.kind_of(name) and path.is_file():
            found[name] = path
    return found


ZSTD_TIMEOUT = 120  # a segment is at most a few dozen MB


def _zstd(args: list[str]) -> None:
    """zstd through the runner (the worker's; the archive command runs its own)."""
    programs.run([walarchive.zstd_program(), "-q", *args], timeout=ZSTD_TIMEOUT)


def plain_copy(path: Path, into: Path) -> None:
    """The stored file's original bytes (decompressed, for a .zst) as the file `into`."""
    if path.name.endswith(walarchive.ZSTD_SUFFIX):
        _zstd(["--decompress", "--force", "-o", str(into), str(path)])
    else:
        shutil.copyfile(path, into)


def last_commit_in(path: Path, name: str, major: int | None) -> datetime | None:
    """The newest commit or abort timestamp in one segment, read with pg_waldump."""
    lines: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="paws360-waldump-") as tmp:
        plain_copy(path, Path(tmp) / name)
        try:
            pg.run("pg_waldump", ["--rmgr=Transaction", f"--path={tmp}", name], major=major, timeout=120,
                   stdout_sink=lines.append, env={"TZ": "UTC"})
        except pg.PgToolError as exc:
            # pg_waldump reads one segment to its end and then reports the next record as invalid: normal.
            if exc.returncode != 1:
                raise
    stamps = COMMIT_RE.findall(b"".join(lines).decode(errors="replace"))
    if not stamps:
        return None
    return max(datetime.fromisoformat(s).replace(tzinfo=UTC) for s in stamps)


def check_stored(path: Path) -> str:
    """'' when the stored file reads back whole (a zstd frame's own checksum), else the problem."""
    if not path.name.endswith(walarchive.ZSTD_SUFFIX):
        return ""
    try:
        _zstd(["--test", str(path)])
    except programs.ProgramError as exc:
        return f"{path}: cannot be decompressed (damaged?): {exc}"
    return ""


def record(archive: WalArchive, name: str, path: Path) -> WalSegment:
    stat = path.stat()
    kind = walarchive.kind_of(name)
    timeline = segno = None
    if kind in ("segment", "partial", "backup"):
        timeline, segno = walarchive.parse_segment(name[:24], archive.segment_size)
    elif kind == "history":
        timeline = int(name[:8], 16)
    problem = check_stored(path)
    last_commit = None
    if kind == "segment" and not problem:
        try:
            last_commit = last_commit_in(path, name, archive.cluster.major)
        except (pg.PgToolError, walarchive.ArchiveError) as exc:
            problem = f"pg_waldump cannot read it: {exc}"
    segment, _ = WalSegment.objects.update_or_create(archive=archive, name=name, defaults={
        "kind": kind, "stored_name": path.name, "timeline": timeline, "segno": segno,
        "size_bytes": stat.st_size, "sha256": files.sha256_of(path),
        "compressed": path.name.endswith(walarchive.ZSTD_SUFFIX),
        "arrived_at": datetime.fromtimestamp(stat.st_mtime, tz=UTC), "last_commit_at": last_commit,
        "checked_at": timezone.now(), "state": WalSegment.State.CORRUPT if problem else WalSegment.State.PRESENT,
        "problem": problem, "removed_at": None,
    })
    return segment


def scan(archive: WalArchive) -> ScanResult:
    """Bring the catalog up to date with the archive folder."""
    result = ScanResult()
    on_disk = archived_files(archive.folder)
    known = {s.name: s for s in archive.segments.exclude(state=WalSegment.State.REMOVED)}
    for name in sorted(set(on_disk) - set(known)):
        if record(archive, name, on_disk[name]).state == WalSegment.State.CORRUPT:
            result.corrupt += 1
        result.new += 1
    for name, segment in known.items():
        if name not in on_disk and segment.state != WalSegment.State.MISSING:
            segment.state, segment.problem = WalSegment.State.MISSING, "the file vanished from the archive"
            segment.checked_at = timezone.now()
            segment.save(update_fields=["state", "problem", "checked_at"])
            audit.record("wal.segment_missing", actor="system:wal-catalog", obj=segment,
                         target=str(archive.cluster), outcome=audit.Outcome.FAILURE, details={"name": name})
            result.vanished += 1
        elif name in on_disk and segment.state == WalSegment.State.MISSING:
            record(archive, name, on_disk[name])  # put back: checked again from scratch
    remove_stale_temps(archive.folder)
    return result


def remove_stale_temps(folder: Path) -> None:
    cutoff = time.time() - STALE_TEMP_SECONDS
    for temp in folder.glob(f"{walarchive.TEMP_PREFIX}*"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
        except FileNotFoundError:
            pass


def verify(archive: WalArchive, max_bytes: int | None = None) -> list[WalSegment]:
    """Re-hash the segments checked longest ago, up to `max_bytes`; mark and return the damaged ones."""
    budget = settings.WAL_VERIFY_BYTES_PER_RUN if max_bytes is None else max_bytes
    damaged: list[WalSegment] = []
    queryset = archive.segments.filter(state=WalSegment.State.PRESENT).order_by("checked_at", "segno")
    for segment in queryset.iterator():
        if budget <= 0:
            break
        budget -= segment.size_bytes
        path = archive.folder / segment.stored_name
        try:
            actual = files.sha256_of(path)
        except FileNotFoundError:
            continue  # the next scan records it as missing
        segment.checked_at = timezone.now()
        if actual != segment.sha256:
            segment.state = WalSegment.State.CORRUPT
            segment.problem = f"sha256 is {actual}, was {segment.sha256} when archived"
            damaged.append(segment)
            audit.record("wal.segment_corrupt", actor="system:wal-catalog", obj=segment,
                         target=str(archive.cluster), outcome=audit.Outcome.FAILURE,
                         details={"name": segment.name, "problem": segment.problem})
        segment.save(update_fields=["checked_at", "state", "problem"])
    return damaged


def segments_in_order(archive: WalArchive) -> Iterable[WalSegment]:
    return archive.segments.filter(kind="segment").exclude(state=WalSegment.State.REMOVED).order_by("segno", "timeline")


def find_gaps(archive: WalArchive) -> list[Gap]:
    """Runs of segment numbers, between the oldest and the newest segment kept, with no usable segment on any
    timeline (after a timeline switch, the new timeline carries on from the old one's segment numbers)."""
    kept = list(segments_in_order(archive).values_list("segno", "timeline", "state"))
    if not kept:
        return []
    usable = {segno for segno, _, state in kept if state in USABLE}
    timeline_at = {segno: timeline for segno, timeline, _ in kept}
    gaps: list[Gap] = []
    start = None
    for segno in range(kept[0][0], kept[-1][0] + 1):
        if segno not in usable and start is None:
            start = segno
        elif segno in usable and start is not None:
            gaps.append(Gap(timeline_at.get(start, timeline_at.get(segno, 1)), start, segno - 1, archive.segment_size))
            start = None
    if start is not None:
        gaps.append(Gap(timeline_at.get(start, 1), start, kept[-1][0], archive.segment_size))
    return gaps


def newest_contiguous(archive: WalArchive, from_segno: int) -> WalSegment | None:
    """The last usable segment of the unbroken run that starts at `from_segno`."""
    last = None
    expected = from_segno
    for segment in segments_in_order(archive).filter(segno__gte=from_segno, state__in=USABLE):
        if segment.segno == expected - 1:
            continue  # the same segment number on a later timeline
        if segment.segno != expected:
            break
        last, expected = segment, expected + 1
    return last


def totals(archive: WalArchive) -> tuple[int, int]:
    live = archive.segments.filter(~Q(state=WalSegment.State.REMOVED), ~Q(state=WalSegment.State.MISSING))
    return live.count(), sum(live.values_list("size_bytes", flat=True))


def recent_arrivals(archive: WalArchive, hours: int = 24) -> list[tuple[datetime, int, int]]:
    """(hour, segments, bytes) for each hour of the last `hours` hours: the archive filling."""
    since = timezone.now() - timedelta(hours=hours)
    buckets: dict[datetime, list[int]] = {}
    for arrived, size in archive.segments.filter(arrived_at__gte=since).values_list("arrived_at", "size_bytes"):
        hour = arrived.replace(minute=0, second=0, microsecond=0)
        bucket = buckets.setdefault(hour, [0, 0])
        bucket[0] += 1
        bucket[1] += size
    return [(hour, count, size) for hour, (count, size) in sorted(buckets.items())]
