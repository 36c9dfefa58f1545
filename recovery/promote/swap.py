"""The swap itself: what is recorded before acting (so a dead run is undone the same way), the data directories
renamed, production started on its own settings, verified on its new timeline, the recovered cluster retired."""


from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.utils import timezone

from backups.wal import catalog, walarchive
from portal import audit, pg, targets
from portal.jobs import Cancelled
from portal.models import ManagedCluster
from recovery import passfile
from recovery.datadirs import (
    MoveError,
    Server,
    carry_config,
    mark_history_for_archiving,
    rename,
    strip_pitr_settings,
)
from recovery.models import RecoveryRequest
from recovery.pitr import archive_of, utc
from recovery.promote.stages import ARCHIVE_TIMEOUT, MOVE, READY_TIMEOUT, SETTINGS, STOP_PRODUCTION, STOP_RECOVERED
from recovery.runbook import runbook_counts
from recovery.steps import Steps

Say = Callable[[str], None]

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
    previous = request.promotion
    request.promotion = {**previous, **swap.places(), **more, "stage": stage}
    request.save(update_fields=["promotion"])


def facts(target: pg.Target) -> dict[str, object]:
    with pg.connect(target, purpose="promote-check") as conn:
        sysid, in_recovery, data, wal = conn.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text, pg_is_in_recovery(), "
            "current_setting('data_directory'), pg_walfile_name(pg_current_wal_lsn())").fetchone()
    return {"system_identifier": sysid, "in_recovery": in_recovery, "data_directory": data,
            "timeline": int(wal[:8], 16)}


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
    state = request.promotion
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
    targets.refresh(production)
    audit.record("recovery.promote.retire", actor=request.requester or "system", obj=recovered,
                 target=str(recovered), details={"request": request.pk, "production": production.name})
