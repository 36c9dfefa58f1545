"""Checks made when a point-in-time request is submitted, and again when it runs: the target against the
recoverable window (and the gaps), the base backup that reaches it, and the new cluster's name and port."""


from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from backups.models import Backup, BackupPolicy, WalArchive, WalSegment
from backups.wal import catalog as walcatalog
from backups.wal import walarchive
from backups.wal.window import Range, kept_base_backups, range_of, recoverable_window
from portal.models import ManagedCluster
from recovery import passfile
from recovery.approvals import Refused
from recovery.models import RecoveryRequest
from recovery.pitr.times import utc

log = logging.getLogger(__name__)


def archive_of(cluster: ManagedCluster) -> WalArchive:
    archive = WalArchive.objects.filter(cluster=cluster).first()
    if archive is None:
        raise Refused(f"{cluster} does not archive its WAL: point-in-time recovery needs continuous archiving "
                      f"and a base backup (manage.py configure_archiving {cluster.name})")
    return archive


def spans(ranges: list[Range]) -> str:
    texts = [f"{utc(r.start)} … {utc(r.end)}" for r in ranges]
    return f"{', '.join(texts[:-1])} and {texts[-1]}" if len(texts) > 1 else texts[0]


def window_text(ranges: list[Range]) -> str:
    return f"the recoverable window{'s' if len(ranges) > 1 else ''} {spans(ranges)}"


def gap_text(gap: walcatalog.Gap) -> str:
    return f"WAL from {gap.first_name} to {gap.last_name} is missing" if gap.count > 1 else \
        f"WAL {gap.first_name} is missing"


def check_target(cluster: ManagedCluster, target: datetime) -> Range:
    """The part of the recoverable window that holds `target`; Refused, stating the window, when none does (and
    the gap in the archive that ends the window before the target, when one does). A target must be before the
    newest archived commit: PostgreSQL stops at the first commit after it."""
    if timezone.is_naive(target):
        raise Refused("give the target time with its time zone (or UTC offset)")
    archive_of(cluster)
    window = recoverable_window(cluster)
    if not window.recoverable:
        raise Refused(f"no point-in-time recovery of {cluster} is possible: no kept base backup with its WAL")
    for candidate in window.ranges:
        if candidate.start <= target < candidate.end:
            return candidate
    reason = f"{utc(target)} is outside {window_text(window.ranges)}"
    before = [r for r in window.ranges if r.end <= target]
    gap = window.gap_after(before[-1]) if before else None
    if gap is not None:  # the WAL after the window is there, but replay cannot cross the gap
        reason = (f"{utc(target)} cannot be reached: {gap_text(gap)}; recoverable "
                  f"window{'s' if len(window.ranges) > 1 else ''}: {spans(window.ranges)}")
    elif target >= window.ranges[-1].end:
        reason += (f" (recovery stops at the first commit after the target; the newest archived commit is at "
                   f"{utc(window.ranges[-1].end)})")
    elif target < window.ranges[0].start:
        reason += f" (the oldest kept base backup ended at {utc(window.ranges[0].start)})"
    else:
        reason += " (WAL is missing in between: see the archive's gaps)"
    raise Refused(reason)


def default_destination_name(cluster: ManagedCluster, target: datetime) -> str:
    """Named for the source and the target: two requests for the same moment are refused as one destination."""
    suffix = f"-pitr-{target.astimezone(UTC):%Y%m%d-%H%M%S}"
    return slugify(cluster.name)[: 63 - len(suffix)] + suffix


def validate_request(request: RecoveryRequest) -> None:
    """A point-in-time request's checks (`recovery.validation`, when it is submitted): a clear error on the field at
    fault. Without a target time or a cluster, the model's own check says so."""
    if not (request.target_time and request.cluster_id):
        return
    if request.destination == RecoveryRequest.Destination.REPLACE:
        raise ValidationError({"destination": "A point-in-time recovery builds a new cluster beside production. "
                               "To make it production, check it, then request \u201cMake this cluster production\u201d "
                               "on the recovery's page: a separate step a second DBA approves."})
    if request.backup_id:  # a backup chosen by hand: its own refusal is the clearest reason
        try:
            check_backup(Backup.objects.get(pk=request.backup_id), request.cluster, request.target_time)
        except Refused as exc:
            raise ValidationError({"backup": str(exc)}) from exc
    try:
        check_target(request.cluster, request.target_time)
    except Refused as exc:
        raise ValidationError({"target_time": str(exc)}) from exc
    if not request.destination_name:
        request.destination_name = default_destination_name(request.cluster, request.target_time)
    try:
        validate_slug(request.destination_name)
    except ValidationError as exc:
        raise ValidationError({"destination_name": "the recovered cluster's name: letters, digits, - and _ only"}) \
            from exc
    if ManagedCluster.objects.filter(name=request.destination_name).exists():
        raise ValidationError({"destination_name": f"a cluster named {request.destination_name!r} is already "
                               "registered: choose another name"})
    try:
        passfile.password_field(request.cluster)
    except passfile.CredentialsError as exc:
        raise ValidationError({"cluster": str(exc)}) from exc


def check_backup(backup: Backup, cluster: ManagedCluster, target: datetime) -> Range:
    """Refuse, with the reason, a base backup that cannot serve this recovery."""
    name = f"base backup {backup}"
    if backup.kind != BackupPolicy.Kind.BASE or backup.cluster_id != cluster.pk:
        raise Refused(f"{backup} is not a base backup of {cluster}")
    if backup.status != Backup.Status.SUCCEEDED:
        raise Refused(f"{name} did not succeed ({backup.status}: {backup.error or 'no outcome yet'})")
    if backup.expired_at:
        raise Refused(f"{name} was expired by retention at {utc(backup.expired_at)}")
    if backup.verification == Backup.Verification.FAILED:
        raise Refused(f"{name} failed verification: {backup.verification_error}")
    if backup.verification != Backup.Verification.VERIFIED:
        raise Refused(f"{name} is not verified ({backup.get_verification_display().lower()}): a base backup is "
                      "used only after pg_verifybackup passed on it")
    if backup.finished is None or backup.finished > target:
        raise Refused(f"{name} ended at {utc(backup.finished) if backup.finished else '?'}, after the target "
                      f"{utc(target)}")
    covered = range_of(archive_of(cluster), backup)
    if covered is None or not covered.start <= target < covered.end:
        reach = f"reaches {utc(covered.end)}" if covered else "is not in the archive"
        raise Refused(f"the WAL after {name} {reach}: it cannot replay to {utc(target)}")
    return covered


def choose_backup(cluster: ManagedCluster, target: datetime, say: Callable[[str], None]) -> Backup:
    """The newest succeeded, verified, unexpired base backup that ended before the target and whose WAL reaches
    it; newer ones that cannot serve are named with the reason."""
    for backup in kept_base_backups(cluster).filter(finished__lte=target).order_by("-finished"):
        try:
            check_backup(backup, cluster, target)
        except Refused as exc:
            say(f"skipped: {exc}")
            continue
        return backup
    raise Refused(f"no verified base backup of {cluster} ended before {utc(target)} with WAL that reaches it")


def replay_bound(archive: WalArchive, backup: Backup, target: datetime) -> int:
    """An upper bound of the LSN where replay stops: the end of the first archived segment after the backup's
    start whose newest commit is after the target (PostgreSQL stops before that commit)."""
    first = walarchive.parse_segment(backup.start_wal, archive.segment_size)[1]
    segment = (archive.segments.filter(kind="segment", state=WalSegment.State.PRESENT, segno__gte=first,
                                       last_commit_at__gt=target).order_by("segno").first())
    if segment is None:
        segment = walcatalog.newest_contiguous(archive, first)
    return (segment.segno + 1) * archive.segment_size if segment else walarchive.parse_lsn(backup.end_lsn)


def newest_archived_commit(archive: WalArchive) -> datetime | None:
    return (archive.segments.filter(kind="segment", state=WalSegment.State.PRESENT)
            .aggregate(newest=Max("last_commit_at"))["newest"])


def free_port() -> int:
    taken = set(ManagedCluster.objects.filter(host__in=["127.0.0.1", "localhost"]).values_list("port", flat=True))
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port
