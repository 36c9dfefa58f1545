"""Making a recovered cluster production (the last step of Scenario 2), on a local cluster the portal controls.

A point-in-time recovery builds its cluster beside production (RECOVERY_ROOT/<name>/data, its own port). This
separate request, always approved by a second DBA, swaps data directories: the application services stop, the
recovered cluster and then production stop cleanly (pg_ctl -m fast, as the OS user), production's data directory
is renamed `<data>.before_<UTC time>` (kept, never deleted) and the recovered one is renamed into its place (one
file system: a rename, nothing copied). The settings the recovery appended to postgresql.auto.conf are taken out,
so production's own apply again (its port, archive_mode, archive_command); production starts through pg_ctl, must
leave recovery, show the row counts the recovered cluster had, and archive a segment of its new timeline into its
archive. The recovered cluster's record stays, for history, no longer controlled by the portal; its passfile goes.

A failure never makes things worse. Before production stops, nothing changed: the recovered cluster starts again
and so do the services. After production's data directory was moved, it is put back (whatever runs from its path
is stopped, the directories renamed back, production started) and the step log says so. A worker that dies
mid-way is undone the same way by the reaper (`cleanup.register`), from what the request recorded before acting.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from backups.models import Backup
from backups.wal import catalog, walarchive
from portal import audit, jobs, pg
from portal.jobs import Cancelled, Reporter
from portal.models import ManagedCluster
from recovery import cleanup, objectives, passfile, services
from recovery.approvals import Refused
from recovery.datadirs import (
    MoveError,
    Server,
    carry_config,
    mark_history_for_archiving,
    pitr_block,
    put_back_settings,
    rename,
    same_file_system,
    strip_pitr_settings,
)
from recovery.models import ACTIVE_STATES, RecoveryRequest, RecoveryStep
from recovery.pitr import archive_of, runbook_counts, utc
from recovery.steps import Steps

Say = Callable[[str], None]

CHECK = "Check both clusters"
STOP_RECOVERED = "Stop the recovered cluster"
STOP_PRODUCTION = "Stop production"
MOVE = "Move production's data directory aside and the recovered one into its place"
SETTINGS = "Remove the recovery's settings, so production's own apply"
START = "Start production"
VERIFY = "Verify production: out of recovery, row counts, archiving on the new timeline"
RETIRE = "Retire the recovered cluster's registration"

ARCHIVE_TIMEOUT = 120
READY_TIMEOUT = 120


def plan(with_services: bool) -> list[str]:
    stop, start = ([services.STOP_STEP], [services.START_STEP]) if with_services else ([], [])
    return [CHECK, *stop, STOP_RECOVERED, STOP_PRODUCTION, MOVE, SETTINGS, START, VERIFY, RETIRE, *start]


# --- What is refused, when the request is made and again when it runs.

def clusters_of(request: RecoveryRequest) -> tuple[ManagedCluster, ManagedCluster]:
    """(production, recovered), or Refused with the reason."""
    pitr = request.source_recovery
    if pitr is None:
        raise Refused("name the point-in-time recovery whose cluster should become production")
    if pitr.kind != RecoveryRequest.Kind.PITR:
        raise Refused(f"{pitr} is not a point-in-time recovery")
    if pitr.status != RecoveryRequest.Status.SUCCEEDED:
        raise Refused(f"{pitr} did not succeed ({pitr.get_status_display().lower()}): only a recovered, verified "
                      "cluster can become production")
    recovered = pitr.result_cluster
    if recovered is None:
        raise Refused(f"{pitr} left no registered cluster")
    production = request.cluster
    if pitr.cluster_id != production.pk:
        raise Refused(f"{recovered} was recovered from {pitr.cluster}, not from {production}")
    for cluster, what in ((production, "production"), (recovered, "the recovered cluster")):
        if not (cluster.is_local and cluster.data_directory and cluster.os_user):
            raise Refused(f"{what} ({cluster}) is not a local cluster the portal controls (pg_ctl control, data "
                          "directory and OS user): swapping data directories is done only there"
                          + (f" — {cluster.status_error}" if cluster.status_error else ""))
    if production.major is None or production.major != recovered.major:
        raise Refused(f"major versions differ: {production} is {production.major}, {recovered} {recovered.major}")
    if production.os_user != recovered.os_user:
        raise Refused(f"{production} belongs to {production.os_user}, {recovered} to {recovered.os_user}")
    busy = (RecoveryRequest.objects.filter(Q(cluster=production) | Q(cluster=recovered), status__in=ACTIVE_STATES)
            .exclude(pk=request.pk).first())
    if busy is not None:
        raise Refused(f"{busy} is active on {busy.cluster}: one recovery at a time")
    check_places(production, recovered)
    return production, recovered


def check_places(production: ManagedCluster, recovered: ManagedCluster) -> None:
    data, moving = Path(production.data_directory), Path(recovered.data_directory)
    for path in (data, moving):
        if not path.is_dir():
            raise Refused(f"{path} is not there")
    if not same_file_system(data.parent, moving):
        raise Refused(f"{moving} and {data} are on different file systems: the portal moves data directories by "
                      "renaming them, never by copying student records; move RECOVERY_ROOT to production's file "
                      "system or swap them by hand")


def validate_request(request: RecoveryRequest) -> None:
    """For RecoveryRequest.clean(): the refusal as a form error, and the recovered cluster running now."""
    try:
        _production, recovered = clusters_of(request)
    except Refused as exc:
        raise ValidationError({"source_recovery": str(exc)}) from exc
    if not recovered.refresh_status():
        raise ValidationError({"source_recovery": f"{recovered} is not running: {recovered.status_error}"})


# --- The run.

@dataclass
class Swap:
    """Where everything is; recorded on the request before anything is stopped, for a rollback or the reaper."""

    production: Server
    recovered: Server
    before: Path
    kept_settings: Path

    @classmethod
    def plan(cls, production: ManagedCluster, recovered: ManagedCluster) -> Swap:
        data = Path(production.data_directory)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        moving = Path(recovered.data_directory)
        return cls(Server(data, production.os_user, production.major),
                   Server(moving, recovered.os_user, recovered.major),
                   data.with_name(f"{data.name}.before_{stamp}"), moving.parent / "postgresql.auto.conf.recovered")

    def places(self) -> dict[str, object]:
        return {"production_data": str(self.production.data), "recovered_data": str(self.recovered.data),
                "before_data": str(self.before), "kept_settings": str(self.kept_settings),
                "os_user": self.production.os_user, "major": self.production.major}

    @classmethod
    def from_state(cls, state: dict) -> Swap:
        return cls(Server(Path(state["production_data"]), state["os_user"], state["major"]),
                   Server(Path(state["recovered_data"]), state["os_user"], state["major"]),
                   Path(state["before_data"]), Path(state["kept_settings"]))


def save_state(request: RecoveryRequest, swap: Swap, stage: str, **more: object) -> None:
    previous = request.verification.get("promote", {})
    request.verification["promote"] = {**previous, **swap.places(), **more, "stage": stage}
    request.save(update_fields=["verification"])


def facts(target: pg.Target) -> dict[str, object]:
    with pg.connect(target, purpose="promote-check") as conn:
        sysid, in_recovery, data, wal = conn.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text, pg_is_in_recovery(), "
            "current_setting('data_directory'), pg_walfile_name(pg_current_wal_lsn())").fetchone()
    return {"system_identifier": sysid, "in_recovery": in_recovery, "data_directory": data,
            "timeline": int(wal[:8], 16)}


def no_backup_running(*clusters: ManagedCluster) -> None:
    """Refused while a backup of either cluster is queued or running: stopping its server would fail it. From
    the moment the promotion runs, `backups_held` keeps new ones from starting."""
    busy = Backup.objects.filter(cluster__in=clusters, status__in=[Backup.Status.QUEUED, Backup.Status.RUNNING])
    if (backup := busy.select_related("cluster").first()) is not None:
        raise Refused(f"backup {backup} of {backup.cluster} is {backup.status}: stopping the server would break it; "
                      "run the promotion again once it has finished")


def backups_held(backup: Backup) -> str:
    """For backups.pipeline.HOLDS: no backup of a cluster whose data directory a promotion is swapping."""
    swapping = RecoveryRequest.objects.filter(
        Q(cluster=backup.cluster) | Q(source_recovery__result_cluster=backup.cluster),
        kind=RecoveryRequest.Kind.PROMOTE, status=RecoveryRequest.Status.RUNNING).first()
    return f"{swapping} is swapping {backup.cluster}'s data directory" if swapping else ""


def check(request: RecoveryRequest, say: Say) -> tuple[ManagedCluster, ManagedCluster, Swap]:
    production, recovered = clusters_of(request)
    no_backup_running(production, recovered)
    swap = Swap.plan(production, recovered)
    seen = {}
    for cluster, server in ((production, swap.production), (recovered, swap.recovered)):
        try:
            seen[cluster.name] = found = facts(cluster.target())
        except psycopg.Error as exc:
            raise Refused(f"{cluster} does not answer: {exc}") from exc
        if Path(str(found["data_directory"])).resolve() != server.data.resolve():
            raise Refused(f"{cluster} runs from {found['data_directory']}, not {server.data} as registered")
        if found["in_recovery"]:
            raise Refused(f"{cluster} is in recovery")
        say(f"{cluster}: {server.data}, system identifier {found['system_identifier']}, timeline "
            f"{found['timeline']}, not in recovery")
    if seen[production.name]["system_identifier"] != seen[recovered.name]["system_identifier"]:
        raise Refused(f"{recovered} is not a copy of {production}: their system identifiers differ")
    if swap.before.exists():
        raise Refused(f"{swap.before} exists already")
    settings_text = (swap.recovered.data / "postgresql.auto.conf").read_text()
    if pitr_block(settings_text) is None:
        raise Refused(f"{recovered}'s postgresql.auto.conf no longer holds the recovery's settings block (rewritten "
                      "by ALTER SYSTEM?): the portal cannot tell them from production's")
    counts = {db.name: runbook_counts(recovered.target(db.name)) for db in recovered.databases.all()}
    say("row counts of the recovered cluster: " + (repr(counts) if any(counts.values()) else "no runbook tables"))
    save_state(request, swap, "checked", counts=counts, production_timeline=seen[production.name]["timeline"],
               recovered_was_running=True, recovered_cluster=recovered.pk)
    return production, recovered, swap


def promote(request: RecoveryRequest, reporter: Reporter) -> None:
    """The procedure for kind "promote"."""
    app = services.configured()
    steps = Steps(request, reporter, plan(bool(app)))
    try:
        with steps.run(CHECK):
            production, recovered, swap = check(request, steps.logger(CHECK))
        if app:
            with steps.run(services.STOP_STEP):
                say = steps.logger(services.STOP_STEP)
                services.stop_all(app, say)
                services.confirm_down(app, say)
        swap_directories(request, steps, swap)
        with steps.run(START):
            start_production(production, swap, steps.logger(START))
        with steps.run(VERIFY):
            verify(request, production, swap, steps.logger(VERIFY), reporter.cancel)
        save_state(request, swap, "promoted")
        ignore_cancel(request, reporter)
        with steps.run(RETIRE):
            retire(request, production, recovered, steps.logger(RETIRE))
    except BaseException as exc:
        problems = roll_back(request, steps, app)
        if problems:
            raise MoveError(f"{exc or type(exc).__name__}; and then: {'; '.join(problems)}") from exc
        raise
    if app:
        with steps.run(services.START_STEP):
            services.start_all(app, steps.logger(services.START_STEP))
    ignore_cancel(request, reporter)
    first = steps.first_started()
    assert first is not None and first.started is not None
    until = "the services healthy" if app else "production verified"
    seconds = objectives.record_rto(request, first.started, until)
    reporter.log(f"RTO {seconds:.1f} s, from the first step to {until}")
    audit.record("recovery.promote", actor=request.requester or "system", obj=request, target=str(production),
                 details={"recovered_cluster": recovered.name, "before_data": str(swap.before),
                          "timeline": request.verification["promote"].get("timeline"), "rto_seconds": seconds})


def ignore_cancel(request: RecoveryRequest, reporter: Reporter) -> None:
    """Once production runs verified from the recovered data, a cancel would only leave the run half reported."""
    if RecoveryRequest.objects.filter(pk=request.pk, cancel_requested=True).update(cancel_requested=False) \
            or reporter.cancel.is_set():
        reporter.cancel.clear()
        reporter.log("a cancel request came after production was verified on the recovered data: the promotion "
                     "is finished instead")


def swap_directories(request: RecoveryRequest, steps: Steps, swap: Swap) -> None:
    with steps.run(STOP_RECOVERED):
        swap.recovered.stop()
        steps.logger(STOP_RECOVERED)(f"stopped (pg_ctl stop -m fast as {swap.recovered.os_user}): "
                                     f"{swap.recovered.data}")
    with steps.run(STOP_PRODUCTION):
        save_state(request, swap, "stopping production")
        swap.production.stop()
        steps.logger(STOP_PRODUCTION)(f"stopped (pg_ctl stop -m fast as {swap.production.os_user}): "
                                      f"{swap.production.data}")
    with steps.run(MOVE):
        say = steps.logger(MOVE)
        save_state(request, swap, "moving")
        rename(swap.production.data, swap.before)
        say(f"production's data directory is now {swap.before} (kept; the portal never deletes it)")
        rename(swap.recovered.data, swap.production.data)
        say(f"{swap.recovered.data} moved to {swap.production.data}")
    with steps.run(SETTINGS):
        say = steps.logger(SETTINGS)
        data = swap.production.data
        for line in strip_pitr_settings(data, swap.kept_settings):
            say(f"removed from postgresql.auto.conf: {line}")
        say(f"as the recovery wrote it, kept as {swap.kept_settings}")
        for name in carry_config(swap.before, data):
            say(f"{name}: production's own, as it was before the swap (the base backup's copy differed)")
        for name in mark_history_for_archiving(data):
            say(f"{name} marked for archiving (the copy ran with archive_mode off)")


def start_production(production: ManagedCluster, swap: Swap, say: Say) -> None:
    swap.production.start()
    say(f"started through pg_ctl as {swap.production.os_user}; log {swap.production.log}")
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            found = facts(production.target())
        except psycopg.Error as exc:
            found, error = None, exc
        if found is not None and not found["in_recovery"]:
            break
        if time.monotonic() > deadline:
            raise MoveError(f"production did not accept connections out of recovery within {READY_TIMEOUT} s: "
                            f"{error if found is None else 'still in recovery'}")
        time.sleep(0.5)
    if Path(str(found["data_directory"])).resolve() != swap.production.data.resolve():
        raise MoveError(f"the server on {production.host}:{production.port} runs from {found['data_directory']}")
    say(f"accepting connections on {production.host}:{production.port}, not in recovery, timeline "
        f"{found['timeline']}")


def verify(request: RecoveryRequest, production: ManagedCluster, swap: Swap, say: Say,
           cancel: threading.Event) -> None:
    state = request.verification["promote"]
    timeline = facts(production.target())["timeline"]
    if timeline <= state["production_timeline"]:
        raise MoveError(f"production is on timeline {timeline}, not past its old {state['production_timeline']}")
    for database, expected in state["counts"].items():
        counts = runbook_counts(production.target(database))
        if counts != expected:
            raise MoveError(f"{database}: row counts {counts} are not the recovered cluster's {expected}")
        if counts:
            say(f"{database}: " + ", ".join(f"{table} {count}" for table, count in counts.items()))
    archive = archive_of(production)
    with pg.connect(production.target(), purpose="promote-verify", autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # WAL to switch away from, even on an idle server
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    say(f"pg_switch_wal(): waiting for {segment} (timeline {timeline}) in {archive.folder}")
    wanted = [segment, f"{timeline:08X}.history"]
    deadline = time.monotonic() + ARCHIVE_TIMEOUT
    while missing := [name for name in wanted if not walarchive.stored(archive.folder, name)]:
        if cancel.is_set():
            raise Cancelled(f"cancelled on request while waiting for {', '.join(missing)} to be archived")
        if time.monotonic() > deadline:
            raise MoveError(f"{', '.join(missing)} not archived within {ARCHIVE_TIMEOUT} s: archiving does not work "
                            f"on the new timeline ({swap.production.log_tail()})")
        time.sleep(0.5)
    say(f"{', '.join(wanted)} archived: archiving works on the new timeline")
    catalog.scan(archive)
    save_state(request, swap, "verified", timeline=timeline, archived=segment)


def retire(request: RecoveryRequest, production: ManagedCluster, recovered: ManagedCluster, say: Say) -> None:
    """The recovered cluster's data is production's now: its record stays for history, no longer controlled."""
    note = (f"Became production {production} through recovery #{request.pk} at {utc(timezone.now())}: its data "
            f"directory is now {production.data_directory}. Kept for history; not controlled by the portal.")
    ManagedCluster.objects.filter(pk=recovered.pk).update(
        control=ManagedCluster.Control.NONE, data_directory="", passfile="", reachable=False, in_recovery=None,
        status_error=note, checked_at=timezone.now())
    passfile.remove(recovered.name)
    say(f"{recovered}: no longer controlled by the portal, its passfile removed; the record stays for history")
    production.refresh_status()
    audit.record("recovery.promote.retire", actor=request.requester or "system", obj=recovered,
                 target=str(recovered), details={"request": request.pk, "production": production.name})


# --- After a failure: in the worker, or from the reaper when the worker died.

def put_back(request: RecoveryRequest, say: Say) -> None:
    """Production running from its own, complete data directory again; the recovered cluster as it was."""
    state = request.verification.get("promote")
    if not state:
        return  # nothing was stopped or moved
    swap = Swap.from_state(state)
    if state["stage"] not in ("promoted",) and swap.before.exists():
        if swap.production.stop():
            say(f"stopped the server running from {swap.production.data} (the recovered data)")
        if swap.production.data.exists():
            rename(swap.production.data, swap.recovered.data)
            say(f"{swap.production.data} moved back to {swap.recovered.data}")
        rename(swap.before, swap.production.data)
        say(f"production's own data directory is back: {swap.before} → {swap.production.data}")
    if state["stage"] != "promoted" and swap.recovered.data.exists() \
            and put_back_settings(swap.recovered.data, swap.kept_settings):
        say("the recovered cluster's postgresql.auto.conf is as the recovery left it")
    if swap.production.pid() is None:
        swap.production.start()
        say(f"production started from {swap.production.data}")
    else:
        say(f"production is running from {swap.production.data}")
    if state["stage"] != "promoted" and state.get("recovered_was_running") and swap.recovered.data.exists() \
            and swap.recovered.pid() is None:
        try:
            swap.recovered.start()
            say(f"the recovered cluster runs again from {swap.recovered.data}")
        except MoveError as exc:
            say(f"the recovered cluster did not start again: {exc}")


def roll_back(request: RecoveryRequest, steps: Steps, app: list[services.AppService]) -> list[str]:
    """In the worker: put production back (said in the failed step's log), then start the services again."""
    steps.skip_rest()
    failed = next((step for step in steps.steps if step.status == RecoveryStep.Status.FAILED), None)
    log = steps.logger(failed.name) if failed else steps.reporter.log
    problems: list[str] = []
    request.refresh_from_db(fields=["verification"])
    if request.verification.get("promote"):  # otherwise the checks refused it: nothing was stopped
        try:
            put_back(request, lambda line: log(f"[roll back] {line}"))
        except Exception as exc:  # the services must still be started; the problem is reported
            problems.append(f"putting production back failed: {exc}")
            log(f"[roll back] FAILED: {exc}")
        rolled = audit.Outcome.FAILURE if problems else audit.Outcome.SUCCESS
        audit.record("recovery.promote.rollback", actor="system:recovery", obj=request, target=str(request.cluster),
                     outcome=rolled, details={"problems": problems, "state": request.verification["promote"]})
    if app and cleanup.services_left_stopped(request):
        with contextlib.suppress(services.ServiceError), steps.run(services.START_STEP):
            errors = services.restart_each(app, steps.logger(services.START_STEP))
            if errors:
                problems += errors
                raise services.ServiceError("; ".join(errors))
    return problems


def undo_dead_run(request: RecoveryRequest, say: Say) -> None:
    """The reaper's undo: only on the host whose directories these are."""
    if request.worker_host not in ("", jobs.HOST):
        say(f"production's data directories are on {request.worker_host}: put back there")
        return
    put_back(request, say)


