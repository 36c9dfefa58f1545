"""Restore drills: scheduled restores into scratch that prove recovery works and measure how long it takes.

One mechanism for every kind of drill. A `DrillSchedule` row (weekly by default) keeps its django-q2 schedule
in sync (portal.schedules); when it fires, `queue()` records a RecoveryRequest of kind "drill" with the
drill's kind, and the request runs the procedure registered for that kind in `DRILLS` (recovery/pitr.py
registers "pitr"; a logical drill registers "logical"). Every drill must verify what it restored and set the
request's measured RTO; `run()` then compares the RTO with RTO_OBJECTIVE_SECONDS. A drill that fails, or
misses the objective, alerts: an audit event `recovery.drill_failed` with outcome failure, and /health
reports the newest drill of each source as failing until a drill succeeds again.

`amcheck()` and `count_rows()` are the checks any drill can run on what it restored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models import Q

from backups import rowcounts
from portal import audit, pg, schedules
from portal.jobs import Reporter
from portal.models import ManagedCluster
from recovery.models import ACTIVE_STATES, DrillSchedule, RecoveryRequest

DrillProcedure = Callable[[RecoveryRequest, Reporter], None]

# drill kind -> procedure; each drill registers itself here.
DRILLS: dict[str, DrillProcedure] = {}


class DrillFailed(Exception):
    pass


def destination_name(kind: str, cluster: ManagedCluster) -> str:
    """One name per source and kind: the one-destination constraint lets one such drill run at a time."""
    return f"drill-{kind}-{cluster.name}"[:63]


def queue(schedule: DrillSchedule, triggered_by: str) -> RecoveryRequest | None:
    """A queued drill request for the schedule; None when the same drill is still queued or running."""
    try:
        with transaction.atomic():
            request = RecoveryRequest.objects.create(
                kind=RecoveryRequest.Kind.DRILL, drill_kind=schedule.kind, cluster=schedule.cluster,
                database=schedule.database, destination=RecoveryRequest.Destination.BESIDE,
                destination_name=destination_name(schedule.kind, schedule.cluster), triggered_by=triggered_by,
                reason=f"{schedule} ({schedule.effective_cron})", status=RecoveryRequest.Status.QUEUED)
    except IntegrityError:
        return None
    audit.record("recovery.drill_queued", actor=triggered_by, obj=request, target=str(schedule.cluster),
                 details={"drill": schedule.kind, "schedule": schedule.pk})
    return request


def ensure_schedule(cluster: ManagedCluster, kind: str = DrillSchedule.Kind.PITR, database=None) -> DrillSchedule:
    """The drill schedule of a source, created weekly (DRILL_DEFAULT_SCHEDULE) when it has none."""
    schedule, _ = DrillSchedule.objects.get_or_create(kind=kind, cluster=cluster, database=database)
    return schedule


def run(request: RecoveryRequest, reporter: Reporter) -> None:
    """The procedure for kind "drill": the drill of the request's kind, then its RTO against the objective."""
    procedure = DRILLS.get(request.drill_kind)
    try:
        if procedure is None:
            raise NotImplementedError(f"no {request.drill_kind or 'unnamed'!r} drill is available")
        procedure(request, reporter)
        check_objective(request)
    except BaseException as exc:
        alert(request, exc)
        raise


def check_objective(request: RecoveryRequest) -> None:
    objective = settings.RTO_OBJECTIVE_SECONDS
    if request.rto_seconds is None:
        raise DrillFailed("the drill did not measure its RTO")
    met = request.rto_seconds <= objective
    request.verification = {**request.verification, "rto_objective_seconds": objective, "rto_met": met}
    RecoveryRequest.objects.filter(pk=request.pk).update(verification=request.verification)
    if not met:
        raise DrillFailed(f"RTO {request.rto_seconds:.0f} s is over the objective of {objective} s")


def alert(request: RecoveryRequest, exc: BaseException) -> None:
    audit.record("recovery.drill_failed", actor="system:drills", obj=request, target=str(request.cluster),
                 outcome=audit.Outcome.FAILURE,
                 details={"drill": request.drill_kind, "error": str(exc) or type(exc).__name__})


# --- Checks of what a drill restored.

def amcheck(target: pg.Target, say: Callable[[str], None]) -> dict[str, object]:
    """pg_amcheck on every database (tables and B-tree indexes), installing amcheck where it is missing:
    only ever run on a scratch cluster. Raises DrillFailed when it finds corruption or cannot run."""
    args = ["--all", "--install-missing", "--jobs=2", "--no-password"]
    lines: list[str] = []
    try:
        result = pg.run("pg_amcheck", args, target=target, timeout=settings.TASK_TIMEOUT, capture_stdout=True,
                        on_stderr=lines.append)
    except pg.PgToolError as exc:
        raise DrillFailed(f"pg_amcheck found problems or could not run: {exc}") from exc
    found = [line for line in result.stdout.decode(errors="replace").splitlines() if line.strip()]
    for line in (found + lines)[-20:]:
        say(f"pg_amcheck: {line}")
    if found:
        raise DrillFailed(f"pg_amcheck reported: {'; '.join(found[:5])}")
    say(f"pg_amcheck --all: no corruption found ({result.duration:.1f} s)")
    return {"ok": True, "seconds": round(result.duration, 1)}


def count_rows(target: pg.Target, databases: list[str], say: Callable[[str], None]) -> dict[str, dict[str, int]]:
    """Exact row counts of every table (`backups.rowcounts`, the backups' own counter: each read end to end, so a
    table that cannot be read fails here)."""
    counts: dict[str, dict[str, int]] = {}
    for database in databases:
        with pg.connect(target.on(database), purpose="drill-count", statement_timeout_ms=0) as conn:
            counts[database] = rowcounts.count_rows(conn, rowcounts.user_tables(conn))
        say(f"{database}: {len(counts[database])} tables, {sum(counts[database].values())} rows")
    return counts


# --- Health: the newest drill of each source.

def health() -> dict[str, tuple[bool, str]]:
    """source: kind -> (ok, detail), from each enabled schedule's newest finished drill."""
    report: dict[str, tuple[bool, str]] = {}
    for schedule in DrillSchedule.objects.filter(enabled=True).select_related("cluster", "database"):
        drills = RecoveryRequest.objects.filter(kind=RecoveryRequest.Kind.DRILL, drill_kind=schedule.kind,
                                                cluster=schedule.cluster)
        if schedule.database_id:
            drills = drills.filter(database=schedule.database)
        newest = drills.filter(~Q(status__in=ACTIVE_STATES)).order_by("-created").first()
        key = f"{schedule.database or schedule.cluster}: {schedule.kind}"
        report[key] = _state(schedule, newest)
    return report


def _state(schedule: DrillSchedule, newest: RecoveryRequest | None) -> tuple[bool, str]:
    if newest is not None and newest.status != RecoveryRequest.Status.SUCCEEDED:
        when = f"{newest.finished:%Y-%m-%d %H:%M} UTC" if newest.finished else "?"
        return False, f"drill #{newest.pk} {newest.status} at {when}: {newest.error[:300]}"
    if schedules.missed_twice(schedule.effective_cron, newest.created if newest else schedule.created):
        return False, f"no drill succeeded in the last two scheduled runs ({schedule.effective_cron})"
    if newest is None:
        return True, "no drill has run yet"
    rto = f", RTO {newest.rto_seconds:.0f} s of {settings.RTO_OBJECTIVE_SECONDS} s" if newest.rto_seconds else ""
    return True, f"drill #{newest.pk} succeeded at {newest.finished:%Y-%m-%d %H:%M} UTC{rto}"




LOGICAL_DRILL_CRON = "0 5 * * 0"  # an hour after the point-in-time drill (DRILL_DEFAULT_SCHEDULE): not both at once


def schedule_embedded(cluster: ManagedCluster, out: TextIO) -> None:
    """The embedded default's weekly restore drills (manage.py schedule_drill): point-in-time of the cluster, and
    an hour later logical of the sample database."""
    if not DrillSchedule.objects.filter(cluster=cluster, kind=DrillSchedule.Kind.PITR).exists():
        call_command("schedule_drill", cluster.name, stdout=out)
    if not DrillSchedule.objects.filter(cluster=cluster, kind=DrillSchedule.Kind.LOGICAL).exists():
        call_command("schedule_drill", cluster.name, kind=DrillSchedule.Kind.LOGICAL,
                     database=settings.SAMPLE_DATABASE, cron=LOGICAL_DRILL_CRON, stdout=out)
