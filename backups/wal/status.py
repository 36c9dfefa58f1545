"""How archiving is doing, sampled every minute: the archiver, the backlog, the achieved RPO, the slot.

The achieved RPO is how much committed work would be lost if the server and its disks were lost now:

- `safe_lsn`: the end of the newest segment in the archive (the catalog, just rescanned) or, when a
  pg_receivewal of ours streams from the server, the position it has flushed, whichever is further.
- `rpo_bytes` = the server's flushed WAL position (`pg_current_wal_flush_lsn()`: every commit that returned)
  minus `safe_lsn`, at least 0.
- `rpo_seconds`: 0 when `rpo_bytes` is 0; otherwise, with a streaming receiver that is caught up to within
  its flush lag, that lag (pg_stat_replication.flush_lag); otherwise how long ago the newest archived
  segment arrived. All WAL at risk was written after the newest archived segment was closed, and it was
  closed before it arrived, so this bounds the age of the oldest commit at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from backups.models import WalArchive, WalArchiveSample, WalSegment
from backups.wal import catalog as walcatalog
from backups.wal import walarchive
from portal import audit, pg

STATE_SQL = """
SELECT a.archived_count, a.last_archived_wal, a.last_archived_time, a.failed_count, a.last_failed_wal,
       a.last_failed_time,
       (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%%.ready'),
       pg_current_wal_flush_lsn()::text
FROM pg_stat_archiver a
"""
STREAM_SQL = """
SELECT r.flush_lsn::text, extract(epoch FROM r.flush_lag)::float8, s.active, s.wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint, s.safe_wal_size
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = %s
"""


@dataclass
class Problem:
    level: str
    text: str


def safe_position(archive: WalArchive) -> tuple[int, WalSegment | None]:
    """The end of the newest archived segment of the newest timeline, and that segment."""
    newest = (archive.segments.filter(kind="segment", state=WalSegment.State.PRESENT)
              .order_by("-timeline", "-segno").first())
    if newest is None:
        return 0, None
    return (newest.segno + 1) * archive.segment_size, newest


def take_sample(archive: WalArchive) -> WalArchiveSample:
    """Rescan the archive folder, read the server's archiver and slot, record one sample."""
    walcatalog.scan(archive)
    now = timezone.now()
    sample = WalArchiveSample(archive=archive, taken_at=now)
    sample.segments, sample.archive_bytes = walcatalog.totals(archive)
    gaps = walcatalog.find_gaps(archive)
    sample.gaps = len(gaps)
    sample.corrupt = archive.segments.filter(state=WalSegment.State.CORRUPT).count()
    safe, newest = safe_position(archive)
    try:
        with pg.connect(archive.cluster.target(), purpose="wal-status", connect_timeout=5) as conn:
            row = conn.execute(STATE_SQL).fetchone()
            stream = conn.execute(STREAM_SQL, [archive.slot_name]).fetchone() if archive.slot_name else None
    except Exception as exc:  # an unreachable server is a finding, not a crash
        sample.reachable = False
        sample.problems = [{"level": "critical", "text": f"cluster unreachable: {str(exc).strip()[:300]}"}]
        sample.alert = WalArchiveSample.Alert.CRITICAL
        sample.save()
        return sample
    (sample.archived_count, sample.last_archived_wal, sample.last_archived_at, sample.failed_count,
     sample.last_failed_wal, sample.last_failed_at, sample.ready_count, sample.flush_lsn) = row
    sample.last_archived_wal = sample.last_archived_wal or ""
    sample.last_failed_wal = sample.last_failed_wal or ""
    flush = walarchive.parse_lsn(sample.flush_lsn)
    stream_flush = None
    if stream is not None:
        stream_lsn, lag, sample.stream_active, sample.slot_wal_status, retained, safe_size = stream
        sample.stream_flush_lag = lag
        sample.slot_retained_bytes, sample.slot_safe_wal_size = retained, safe_size
        sample.slot_wal_status = sample.slot_wal_status or ""
        if stream_lsn:
            stream_flush = walarchive.parse_lsn(stream_lsn)
            safe = max(safe, stream_flush)
    sample.safe_lsn = walarchive.format_lsn(safe)
    sample.rpo_bytes = max(0, flush - safe)
    if sample.rpo_bytes == 0:
        sample.rpo_seconds = 0.0
    elif stream_flush is not None and sample.stream_active and sample.stream_flush_lag is not None:
        sample.rpo_seconds = sample.stream_flush_lag
    elif newest is not None:
        sample.rpo_seconds = max(0.0, (now - newest.arrived_at).total_seconds())
    problems = assess(archive, sample, gaps)
    sample.problems = [{"level": p.level, "text": p.text} for p in problems]
    sample.alert = worst(problems)
    sample.save()
    return sample


def assess(archive: WalArchive, sample: WalArchiveSample, gaps: list) -> list[Problem]:
    problems: list[Problem] = []
    if sample.last_failed_at and (not sample.last_archived_at or sample.last_failed_at > sample.last_archived_at):
        problems.append(Problem("critical", f"archiving is failing: {sample.last_failed_wal} failed at "
                                f"{sample.last_failed_at:%Y-%m-%d %H:%M:%S} (the server log says why)"))
    if sample.ready_count is not None and sample.ready_count >= 10:
        problems.append(Problem("critical", f"{sample.ready_count} segments wait to be archived"))
    elif sample.ready_count is not None and sample.ready_count >= 3:
        problems.append(Problem("warning", f"{sample.ready_count} segments wait to be archived"))
    for gap in gaps[:5]:
        problems.append(Problem("critical", f"gap in the archive: {gap}"))
    if sample.corrupt:
        problems.append(Problem("critical", f"{sample.corrupt} archived file(s) failed their checksum"))
    if sample.rpo_seconds is not None:
        if sample.rpo_seconds > settings.RPO_OBJECTIVE_SECONDS:
            problems.append(Problem("critical", f"achieved RPO {sample.rpo_seconds:.0f} s is over the objective "
                                    f"of {settings.RPO_OBJECTIVE_SECONDS} s"))
        elif sample.rpo_seconds > 2 * archive.archive_timeout + 30:
            problems.append(Problem("warning", f"achieved RPO {sample.rpo_seconds:.0f} s, archive_timeout is "
                                    f"{archive.archive_timeout} s"))
    problems += assess_slot(archive, sample)
    return problems


def assess_slot(archive: WalArchive, sample: WalArchiveSample) -> list[Problem]:
    """A stopped receiver must not fill the server's disk unnoticed."""
    if not archive.slot_name:
        return []
    if sample.slot_wal_status == "" and sample.stream_active is None:
        return [Problem("warning", f"replication slot {archive.slot_name} does not exist")]
    problems = []
    if sample.slot_wal_status in ("unreserved", "lost"):
        problems.append(Problem("critical", f"slot {archive.slot_name} is {sample.slot_wal_status}: the server "
                                "is removing WAL the receiver has not received"))
    retained = sample.slot_retained_bytes or 0
    if retained > settings.WAL_SLOT_WARN_BYTES:
        problems.append(Problem("critical" if not sample.stream_active else "warning",
                                f"slot {archive.slot_name} holds back {retained // 2**20} MB of WAL on the server"
                                + ("" if sample.stream_active else " and no receiver is connected")))
    elif not sample.stream_active:
        problems.append(Problem("warning", f"no receiver is streaming into slot {archive.slot_name}"))
    return problems


def worst(problems: list[Problem]) -> str:
    levels = {p.level for p in problems}
    for level in (WalArchiveSample.Alert.CRITICAL, WalArchiveSample.Alert.WARNING):
        if level in levels:
            return level
    return WalArchiveSample.Alert.OK


def prune_samples(archive: WalArchive) -> int:
    cutoff = timezone.now() - timedelta(days=settings.WAL_SAMPLE_RETENTION_DAYS)
    return archive.samples.filter(taken_at__lt=cutoff).delete()[0]


def health(archive: WalArchive) -> tuple[bool, str]:
    """For /health: the newest sample's alert, and whether the sampling itself is running."""
    sample = archive.latest_sample()
    if sample is None:
        return False, "not sampled yet (is the task cluster running?)"
    age = (timezone.now() - sample.taken_at).total_seconds()
    if age > settings.STATUS_STALE_SECONDS:
        return False, f"last sampled {age:.0f} s ago (is the task cluster running?)"
    summary = "; ".join(p["text"] for p in sample.problems)
    if sample.alert == WalArchiveSample.Alert.CRITICAL:
        return False, summary
    if sample.alert == WalArchiveSample.Alert.WARNING:
        return True, f"warning: {summary}"
    return True, f"RPO {sample.rpo_seconds or 0:.0f} s, {sample.ready_count} waiting, {sample.segments} archived"


def all_health() -> dict[str, tuple[bool, str]]:
    """For /health: every archive, by its cluster's name."""
    return {archive.cluster.name: health(archive) for archive in WalArchive.objects.select_related("cluster")}


def sample_now(archive: WalArchive, actor: str) -> str:
    """A DBA's "sample now" (queued to the worker): the archive rescanned and the archiver sampled at once, recorded
    with who asked. The sample's alert."""
    sample = take_sample(archive)
    audit.record("walarchive.sample", actor=actor, obj=archive, target=str(archive.cluster),
                 details={"alert": sample.alert})
    return sample.alert
