"""Point-in-time recovery (Scenario 2): a new cluster beside production, recovered to a moment in time.

The target time is checked against the recoverable window when the request is made and again when it runs; a
target beyond a gap in the archive is refused naming the gap and the windows. The newest succeeded, verified,
unexpired base backup that ended before the target (the next one, when it is found damaged while it is extracted:
it is marked so) is restored into a new data directory (RECOVERY_ROOT/<name>, never the source's), with
restore_command fetching from the source's WAL archive, recovery_target_time in UTC with its offset,
recovery_target_action = 'pause' and recovery.signal. The server starts on a free port of 127.0.0.1 as the
cluster's OS user; the portal follows the replay and promotes only once PostgreSQL paused at the target (see
recovery/replay.py). The result is verified and registered as a new managed cluster (its databases as staging),
with the measured RTO and RPO.

Making a recovered cluster production (swapping data directories on a local cluster) is a separate, approved
request (recovery/promote.py): a request with destination "replace" is refused and pointed there.

A failed run stops its server and removes its data directory (a copy of student records that nothing
manages and nothing can resume); the server log stays in RECOVERY_ROOT/<name>/ for the DBA. A run whose
worker was killed is cleaned up by the reaper (RecoveryRequest.on_reaped) or by the next recovery.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify
from psycopg import sql

from backups import leases, walarchive, walcatalog, walsetup
from backups.models import Backup, BackupPolicy, WalArchive, WalSegment
from backups.verify import mark_damaged
from backups.walwindow import Range, kept_base_backups, range_of, recoverable_window
from portal import audit, jobs, pg
from portal.jobs import Reporter
from portal.models import ManagedCluster, ManagedDatabase
from recovery import cleanup, drills, newcluster, passfile, replay
from recovery.approvals import Refused
from recovery.models import RecoveryRequest
from recovery.newcluster import NewCluster
from recovery.perform import PROCEDURES
from recovery.steps import Steps

log = logging.getLogger(__name__)

STEP_WINDOW = "Check the target time against the recoverable window"
STEP_BACKUP = "Choose the base backup"
STEP_EXTRACT = "Extract the base backup into a new data directory"
STEP_SETTINGS = "Write the recovery settings"
STEP_REPLAY = "Start the server and replay WAL up to the target"
STEP_PROMOTE = "Promote at the target"
STEP_VERIFY = "Verify the recovered cluster"
STEP_REGISTER = "Register the recovered cluster"
STEP_DRILL_TARGET = "Choose the drill's target time (a minute ago, or the newest archived commit)"
STEP_DRILL_CHECK = "Check the recovered cluster with pg_amcheck and count its rows"
STEP_DRILL_REMOVE = "Stop and remove the scratch cluster"

RESTORE_STEPS = [STEP_BACKUP, STEP_EXTRACT, STEP_SETTINGS, STEP_REPLAY, STEP_PROMOTE]
PLAN = [STEP_WINDOW, *RESTORE_STEPS, STEP_VERIFY, STEP_REGISTER]
DRILL_PLAN = [STEP_DRILL_TARGET, *RESTORE_STEPS, STEP_DRILL_CHECK, STEP_DRILL_REMOVE]

# The runbook's row-count query (its verification after a restore), where these tables exist.
RUNBOOK_TABLES = ["paws360.users", "paws360.students", "paws360.courses", "paws360.enrollments"]


# --- Times: stored aware, written for PostgreSQL with an explicit offset, shown in UTC.

def utc(moment: datetime) -> str:
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.astimezone(UTC).isoformat(sep=" ", timespec=spec)


def shown(moment: datetime) -> str:
    """UTC, and the portal's local time too when that is another zone."""
    local = timezone.localtime(moment)
    if local.utcoffset() == timedelta(0):
        return utc(moment)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return f"{local.isoformat(sep=' ', timespec=spec)} ({utc(moment)})"


def for_postgres(moment: datetime) -> str:
    """recovery_target_time: UTC, microseconds, explicit offset; never the server's own time zone."""
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")


# --- Checks made when the request is submitted, and again when it runs.

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
    """For the request form and RecoveryRequest.clean(): a clear error on the field at fault."""
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


# --- Building the recovered cluster: shared by a recovery and a drill.

@dataclass
class Build:
    request: RecoveryRequest
    steps: Steps
    reporter: Reporter
    target_time: datetime
    archive: WalArchive
    backup: Backup | None = None
    cluster: NewCluster | None = None
    port: int = 0
    passfile: Path | None = None
    reached: replay.Reached | None = None
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def source(self) -> ManagedCluster:
        return self.request.cluster

    def target(self, dbname: str = "postgres") -> pg.Target:
        return pg.Target("127.0.0.1", self.port, self.source.role, dbname,
                         passfile=str(self.passfile or ""), major=self.source.major)

    def say(self, step_name: str) -> Callable[[str], None]:
        return self.steps.logger(step_name)


def name_of(request: RecoveryRequest) -> str:
    """The destination's name, chosen now if the request came without one (the one-destination constraint)."""
    if not request.destination_name:
        request.destination_name = default_destination_name(request.cluster, request.target_time)
        try:
            RecoveryRequest.objects.filter(pk=request.pk).update(destination_name=request.destination_name)
        except IntegrityError as exc:
            raise Refused(f"another recovery is already restoring into {request.destination_name!r}") from exc
    return request.destination_name


def restore(build: Build) -> None:
    """Base backup → new data directory → recovery settings → replay to the target → promote. With the choice left
    to the portal, a backup found damaged while it is extracted is marked so, and the next one that reaches the
    target is extracted instead."""
    request, steps = build.request, build.steps
    by_hand = bool(request.backup_id)
    with steps.run(STEP_BACKUP):
        say = build.say(STEP_BACKUP)
        if by_hand:
            build.backup = Backup.objects.get(pk=request.backup_id)
            check_backup(build.backup, build.source, build.target_time)
        else:
            build.backup = choose_backup(build.source, build.target_time, say)
        say(describe(build.backup))
        RecoveryRequest.objects.filter(pk=request.pk).update(backup=build.backup)
    with contextlib.ExitStack() as lease:
        lease.enter_context(leases.hold(build.backup, f"recovery:{request.pk}"))
        with steps.run(STEP_EXTRACT):
            while not extracted(build, by_hand):
                lease.close()  # the damaged backup's lease; the next one is held instead
                lease.enter_context(leases.hold(build.backup, f"recovery:{request.pk}"))
        with steps.run(STEP_SETTINGS):
            write_settings(build)
        with steps.run(STEP_REPLAY):
            build.reached = replay_to_target(build)
    with steps.run(STEP_PROMOTE):
        replay.promote(build.target())
        build.say(STEP_PROMOTE)("pg_promote(): the server left recovery and is on a new timeline")
        audit.record("recovery.pitr.promote", actor=request.triggered_by or "system", obj=request,
                     target=str(build.source), details={"target": for_postgres(build.target_time),
                                                        "stopped": build.reached.stop_line})


def describe(backup: Backup) -> str:
    return (f"{backup}: ended {utc(backup.finished)}, WAL from {backup.start_wal} ({backup.start_lsn}), "
            f"verified {utc(backup.verified_at)}")


def extracted(build: Build, by_hand: bool) -> bool:
    """Extract the chosen backup: True once done. A backup found damaged is marked so (no longer verified); one
    chosen by hand fails the step, otherwise its half-extracted copy is removed, the next backup that reaches the
    target is chosen, and False says to extract that one."""
    assert build.backup is not None
    try:
        extract(build)
        return True
    except newcluster.DamagedBackup as damage:
        say = build.say(STEP_EXTRACT)
        mark_damaged(build.backup, str(damage), found_by=f"recovery #{build.request.pk} extracting it",
                     actor="system:recovery")
        say(f"{build.backup} is damaged, marked as failed verification: {damage}")
        if by_hand or build.cluster is None:
            raise
        newcluster.remove(build.cluster)
        build.cluster = None
        try:
            build.backup = choose_backup(build.source, build.target_time, say)
        except Refused as exc:
            raise newcluster.DamagedBackup(f"{damage}; no other base backup can serve: {exc}") from damage
        say(f"falling back to the next good base backup, {describe(build.backup)}")
        RecoveryRequest.objects.filter(pk=build.request.pk).update(backup=build.backup)
        return False


def extract(build: Build) -> None:
    name = name_of(build.request)
    build.cluster = NewCluster(newcluster.folder_for(name), build.source.os_user, build.source.major)
    RecoveryRequest.objects.filter(pk=build.request.pk).update(work_directory=str(build.cluster.root))
    build.request.work_directory = str(build.cluster.root)
    newcluster.create_folders(build.cluster)
    say = build.say(STEP_EXTRACT)
    say(f"into {build.cluster.data} (owner {build.source.os_user}, mode 0700)")

    within = build.steps.progress_within(STEP_EXTRACT)

    def on_bytes(done: int, total: int) -> None:
        within(done, total, f"extracting the base backup: {done / 2**20:.0f} of {total / 2**20:.0f} MB "
                            "(sha256 checked as it is read)")

    newcluster.extract(build.cluster, build.backup, on_bytes, build.reporter.cancel)
    say("extracted; every file's sha256 matched the catalog")


def recovery_settings(cluster: NewCluster, port: int, archive: WalArchive, target: datetime) -> dict[str, str]:
    return {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(cluster.run),
        "cluster_name": cluster.name,
        # The copy must never push its WAL into the source's archive (same system identifier).
        "archive_mode": "off",
        "restore_command": walsetup.restore_command(archive),
        "recovery_target_time": for_postgres(target),
        "recovery_target_inclusive": "on",
        "recovery_target_action": "pause",
        "hot_standby": "on",
        # Nothing of the source's replication set-up: no primary to follow, no standby to wait for.
        "primary_conninfo": "",
        "primary_slot_name": "",
        "synchronous_standby_names": "",
        # The log pg_ctl writes is where the portal reads how the recovery went.
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_min_messages": "warning",
    }


def write_settings(build: Build) -> None:
    assert build.cluster is not None
    say = build.say(STEP_SETTINGS)
    build.port = free_port()
    build.passfile = passfile.write(build.source, build.cluster.name, "127.0.0.1", build.port)
    values = recovery_settings(build.cluster, build.port, build.archive, build.target_time)
    header = (f"Point-in-time recovery #{build.request.pk} of {build.source} by the PAWS360 portal, "
              f"{utc(timezone.now())}")
    newcluster.write_settings(build.cluster, values, header)
    for key in ("port", "restore_command", "recovery_target_time", "recovery_target_action", "archive_mode"):
        say(f"{key} = {newcluster.conf_value(values[key])}")
    say(f"recovery.signal created; credentials: the source's role {build.source.role} in {build.passfile} (0600)")


def replay_to_target(build: Build) -> replay.Reached:
    assert build.cluster is not None and build.backup is not None
    say = build.say(STEP_REPLAY)
    newcluster.start(build.cluster)
    say(f"server started on 127.0.0.1:{build.port} as {build.source.os_user}; log {build.cluster.log}")
    watch = replay.Watch(
        cluster=build.cluster, target=build.target(), target_time=build.target_time,
        start_lsn=walarchive.parse_lsn(build.backup.start_lsn),
        bound_lsn=replay_bound(build.archive, build.backup, build.target_time),
        segment_size=build.archive.segment_size, say=say,
        progress=build.steps.progress_within(STEP_REPLAY),
        cancel=build.reporter.cancel, timeout=settings.RECOVERY_REPLAY_TIMEOUT)
    reached = replay.follow(watch)
    last = utc(reached.last_commit) if reached.last_commit else "none after the backup"
    say(f"paused at the target: last replayed commit {last}; stopped before transaction {reached.stop_xid}"
        f"{' committed ' + utc(reached.stop_time) if reached.stop_time else ''}, at {reached.replay_lsn}")
    return reached


# --- Verification, registration, measured objectives.

def runbook_counts(target: pg.Target) -> dict[str, int]:
    counts: dict[str, int] = {}
    with pg.connect(target, purpose="pitr-verify") as conn:
        for table in RUNBOOK_TABLES:
            if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is not None:
                query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
                counts[table] = conn.execute(query).fetchone()[0]
    return counts


def server_facts(build: Build) -> dict[str, object]:
    with pg.connect(build.target(), purpose="pitr-verify") as conn:
        in_recovery, wal_file = conn.execute(
            "SELECT pg_is_in_recovery(), pg_walfile_name(pg_current_wal_lsn())").fetchone()
        databases = dict(conn.execute("SELECT datname, pg_database_size(oid) FROM pg_database "
                                      "WHERE datallowconn AND NOT datistemplate ORDER BY datname").fetchall())
    if in_recovery:
        raise replay.ReplayFailed("the recovered server is still in recovery")
    return {"timeline": int(wal_file[:8], 16), "databases": databases}


def objectives(build: Build) -> None:
    """RTO: the first step's start to now (promoted and verified). RPO: the newest archived commit against
    the target."""
    first = build.request.steps.order_by("position").values_list("started", flat=True).first()
    build.request.rto_seconds = (timezone.now() - first).total_seconds() if first else None
    newest = newest_archived_commit(build.archive)
    build.request.rpo_seconds = max((newest - build.target_time).total_seconds(), 0.0) if newest else None
    build.facts.update({"rto_seconds": build.request.rto_seconds, "rpo_seconds": build.request.rpo_seconds,
                        "rto_objective_seconds": settings.RTO_OBJECTIVE_SECONDS,
                        "newest_archived_commit": utc(newest) if newest else None})


def record_reached(build: Build) -> None:
    reached, backup = build.reached, build.backup
    assert reached is not None and backup is not None and build.cluster is not None
    build.facts.update({
        "target": utc(build.target_time), "backup": backup.name, "backup_pk": backup.pk,
        "last_replayed_commit": utc(reached.last_commit) if reached.last_commit else None,
        "stopped_before_commit_at": utc(reached.stop_time) if reached.stop_time else None,
        "stopped_before_transaction": reached.stop_xid, "replay_lsn": reached.replay_lsn,
        "name": build.cluster.name, "port": build.port, "data_directory": str(build.cluster.data),
    })


def verify(build: Build) -> None:
    say = build.say(STEP_VERIFY)
    record_reached(build)
    build.facts.update(server_facts(build))
    say(f"reachable on 127.0.0.1:{build.port}, not in recovery, timeline {build.facts['timeline']}; databases: "
        + ", ".join(f"{name} ({size / 2**20:.0f} MB)" for name, size in build.facts["databases"].items()))
    for database in build.source.databases.filter(name__in=list(build.facts["databases"])):
        counts = runbook_counts(build.target(database.name))
        if counts:
            build.facts.setdefault("database_counts", {})[database.name] = counts
            say(f"{database.name}: " + ", ".join(f"{table} {count}" for table, count in counts.items()))
    objectives(build)
    save_outcome(build)


def save_outcome(build: Build) -> None:
    request = build.request
    request.verification = build.facts
    RecoveryRequest.objects.filter(pk=request.pk).update(
        verification=build.facts, rto_seconds=request.rto_seconds, rpo_seconds=request.rpo_seconds,
        target_time=build.target_time)


def register(build: Build) -> ManagedCluster:
    """The recovered cluster as a managed cluster the portal controls; the source's databases as staging."""
    assert build.cluster is not None
    source = build.source
    cluster = ManagedCluster.objects.create(
        name=build.cluster.name, host="127.0.0.1", port=build.port, role=source.role,
        passfile=str(build.passfile or ""), control=ManagedCluster.Control.PG_CTL,
        data_directory=str(build.cluster.data), os_user=source.os_user)
    for database in source.databases.filter(name__in=list(build.facts["databases"])):
        ManagedDatabase.objects.create(cluster=cluster, name=database.name,
                                       environment=ManagedDatabase.Environment.STAGING)
    cluster.refresh_status()
    RecoveryRequest.objects.filter(pk=build.request.pk).update(result_cluster=cluster)
    build.request.result_cluster = cluster
    audit.record("recovery.pitr.register", actor=build.request.triggered_by or "system", obj=cluster,
                 target=str(cluster), details={"request": build.request.pk, "source": source.name,
                                               "port": build.port, "data_directory": cluster.data_directory})
    build.say(STEP_REGISTER)(f"registered as cluster {cluster.name} (127.0.0.1:{build.port}); its databases as "
                             "staging. Making it production is a separate request, approved by a second DBA.")
    return cluster


# --- The procedures.

@contextmanager
def building(request: RecoveryRequest, reporter: Reporter, plan: list[str]) -> Iterator[Build]:
    """Declare the steps, clean up what dead runs left; on any failure, abandon what was built."""
    steps = Steps(request, reporter, plan)
    sweep_leftovers(reporter.log)
    build = Build(request, steps, reporter, request.target_time, archive_of(request.cluster))
    try:
        yield build
    except BaseException:
        abandon(build)
        raise


def check_window(build: Build) -> None:
    with build.steps.run(STEP_WINDOW):
        scanned = walcatalog.scan(build.archive)
        build.say(STEP_WINDOW)(f"WAL catalog brought up to date: {scanned.new} new file(s) recorded")
        if build.request.backup_id:
            check_backup(Backup.objects.get(pk=build.request.backup_id), build.source, build.target_time)
        covered = check_target(build.source, build.target_time)
        build.say(STEP_WINDOW)(f"target {shown(build.target_time)} is within {window_text([covered])}")


def recover_to_point(request: RecoveryRequest, reporter: Reporter) -> None:
    """The procedure for kind "pitr"."""
    if request.destination == RecoveryRequest.Destination.REPLACE:
        raise Refused("a point-in-time recovery is restored beside production; making it production is a separate "
                      "request (Make a recovered cluster production), approved by a second DBA")
    with building(request, reporter, PLAN) as build:
        check_window(build)
        restore(build)
        with build.steps.run(STEP_VERIFY):
            verify(build)
        with build.steps.run(STEP_REGISTER):
            register(build)


def abandon(build: Build) -> None:
    """After a failure: the steps not run are skipped, the half-built cluster is stopped and its data removed."""
    build.steps.skip_rest()
    if build.cluster is not None and build.request.result_cluster_id is None:
        kept = newcluster.discard(build.cluster, kept_log(build.request, build.cluster))
        passfile.remove(build.cluster.name)
        build.reporter.log(f"stopped and removed {build.cluster.root}; its server log is kept as {kept}")


def kept_log(request: RecoveryRequest, cluster: NewCluster) -> Path:
    return Path(settings.RECOVERY_ROOT) / "failed" / f"{request.pk}-{cluster.name}.server.log"


def drill_target(build: Build) -> datetime:
    """A minute ago, or just before the newest archived commit when that is older (PostgreSQL stops at the
    first commit after the target, so the target must be before one)."""
    walcatalog.scan(build.archive)
    window = recoverable_window(build.source)
    if not window.ranges:
        raise Refused(f"no point-in-time recovery of {build.source} is possible: no kept base backup with its WAL")
    newest = window.ranges[-1]
    before_last_commit = newest.end - timedelta(milliseconds=1)
    target = min(timezone.now() - timedelta(minutes=1), before_last_commit)
    if target < newest.start:
        target = before_last_commit
    if target < newest.start:
        raise Refused(f"no commit was archived after the newest base backup of {build.source} ended "
                      f"({utc(newest.start)}): there is no moment to recover to yet")
    return target


def drill(request: RecoveryRequest, reporter: Reporter) -> None:
    """The point-in-time drill: recover into scratch, check with pg_amcheck and row counts, measure the RTO,
    then stop and remove the scratch cluster."""
    with building(request, reporter, DRILL_PLAN) as build:
        with build.steps.run(STEP_DRILL_TARGET):
            build.target_time = request.target_time = drill_target(build)
            RecoveryRequest.objects.filter(pk=request.pk).update(target_time=build.target_time)
            build.say(STEP_DRILL_TARGET)(f"target {shown(build.target_time)}")
        restore(build)
        with build.steps.run(STEP_DRILL_CHECK):
            check_scratch(build)
        with build.steps.run(STEP_DRILL_REMOVE):
            remove_scratch(build)


def check_scratch(build: Build) -> None:
    """pg_amcheck on every database and every table counted; the RTO is measured once they passed."""
    say = build.say(STEP_DRILL_CHECK)
    record_reached(build)
    build.facts.update(server_facts(build))
    build.facts["amcheck"] = drills.amcheck(build.target(), say)
    build.facts["database_counts"] = drills.count_rows(build.target(), list(build.facts["databases"]), say)
    objectives(build)
    save_outcome(build)


def remove_scratch(build: Build) -> None:
    assert build.cluster is not None
    newcluster.remove(build.cluster)
    passfile.remove(build.cluster.name)
    build.say(STEP_DRILL_REMOVE)(f"stopped; {build.cluster.root} removed")


# --- After a run that died.

def clean_up(request: RecoveryRequest) -> None:
    """Stop the server a dead run started and remove its data (its log stays). Only on the host that ran it."""
    if not request.work_directory or request.result_cluster_id or request.worker_host not in ("", jobs.HOST):
        return
    cluster = NewCluster(Path(request.work_directory), request.cluster.os_user, request.cluster.major)
    if not cluster.root.exists():
        return
    was_running = newcluster.postmaster_pid(cluster) is not None
    kept = newcluster.discard(cluster, kept_log(request, cluster))
    passfile.remove(cluster.name)
    audit.record("recovery.pitr.cleanup", actor="system:recovery", obj=request, target=str(request.cluster),
                 details={"work_directory": str(cluster.root), "server_was_running": was_running,
                          "server_log": str(kept), "status": request.status})


def sweep_leftovers(say: Callable[[str], None] = log.warning) -> None:
    """What earlier runs that died left behind: the next recovery cleans it up before it starts. A leftover that
    cannot be cleaned up is reported, and does not stop the new recovery."""
    finished = [RecoveryRequest.Status.FAILED, RecoveryRequest.Status.CANCELLED]
    for old in (RecoveryRequest.objects.filter(status__in=finished, kind__in=list(CLEANUP_KINDS))
                .exclude(work_directory="").select_related("cluster")):
        try:
            clean_up(old)
        except (newcluster.BuildError, OSError, pg.PgToolError) as exc:
            say(f"could not clean up after recovery #{old.pk} ({old.work_directory}): {exc}")


CLEANUP_KINDS = (RecoveryRequest.Kind.PITR, RecoveryRequest.Kind.DRILL)
PROCEDURES[RecoveryRequest.Kind.PITR] = recover_to_point
drills.DRILLS["pitr"] = drill


def undo_dead_run(request: RecoveryRequest, say: Callable[[str], None]) -> None:
    clean_up(request)


for _kind in CLEANUP_KINDS:
    cleanup.register(_kind, undo_dead_run)
