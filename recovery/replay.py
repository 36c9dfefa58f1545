"""Following a recovering server up to its target time, and promoting it only when the target was reached.

PostgreSQL 15, with recovery_target_time and recovery_target_action = 'pause', stops replay before the first
commit (or abort) after the target, logs "recovery stopping before commit of transaction N, time T" and
"pausing at the end of recovery", and waits with pg_get_wal_replay_pause_state() = 'paused'. Only that is
"reached". If the WAL runs out first, PostgreSQL 15 ends with FATAL "recovery ended before configured
recovery target was reached" (or, before consistency, "requested recovery stop point is before consistent
recovery point"): the server exits, and that is a failure, never a promotion.

Progress is in bytes of WAL: the replay position (pg_last_wal_replay_lsn() once the server accepts
connections; before that, the segments the log says were restored) from the backup's start LSN, against
an upper bound: the end of the first archived segment whose newest commit is after the target.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from backups.wal import walarchive
from portal import pg
from portal.jobs import Cancelled
from recovery.newcluster import NewCluster, postmaster_pid

POLL_SECONDS = 0.2
STARTUP_GRACE_SECONDS = 60  # how long a just-started server may take to write its pid file
STOP_RE = re.compile(r"recovery stopping before (commit|abort) of transaction (\d+), time (\S+ \S+?)(?:\s|$)")
RESTORED_RE = re.compile(r'restored log file "([0-9A-F]{24})" from archive')
PAUSED_TEXT = "pausing at the end of recovery"
PROBLEM_RE = re.compile(r"\b(FATAL|PANIC|ERROR):\s+(.*)")
# What the portal's own connection attempts cause while the server is not ready: not a problem of recovery.
NOT_READY = ("the database system is starting up", "the database system is not yet accepting connections",
             "the database system is shutting down")
MILESTONES = ("redo starts at", "consistent recovery state reached", "recovery stopping", PAUSED_TEXT,
              "database system is ready to accept read-only connections", "selected new timeline ID",
              "archive recovery complete")
STATE_SQL = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,
       pg_last_xact_replay_timestamp()
"""


class ReplayFailed(Exception):
    """The server did not stop at the target: it ended recovery early, died, or took too long."""


@dataclass
class Reached:
    """Where the server paused: before the commit at `stop_time`, the last one replayed at `last_commit`."""

    stop_line: str
    stop_xid: int
    stop_time: datetime | None
    last_commit: datetime | None
    replay_lsn: str


def parse_log_time(text: str) -> datetime | None:
    """PostgreSQL's timestamptz_to_str ('2026-11-25 14:30:01.123456+00') as an aware datetime."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d)(?::?(\d\d))?", text.strip())
    if not match:
        return None
    stamp, hours, minutes = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes or 0) * (1 if hours[0] == "+" else -1))
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC) - offset


def is_problem(line: str) -> bool:
    """A FATAL, PANIC or ERROR of the server, or what the portal's restore_command said (walarchive.py)."""
    if line.startswith("walarchive "):
        return True
    return bool(PROBLEM_RE.search(line)) and not any(text in line for text in NOT_READY)


class ServerLog:
    """The recovering server's log (pg_ctl --log), read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""
        self.lines: list[str] = []

    def read_new(self) -> list[str]:
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                data = log.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.pending = (self.pending + data).split(b"\n")
        new = [line.decode(errors="replace") for line in complete]
        self.lines.extend(new)
        return new

    def find(self, text: str) -> str:
        return next((line for line in self.lines if text in line), "")

    def problems(self) -> list[str]:
        return [line for line in self.lines if is_problem(line)]

    def tail(self, count: int = 10) -> list[str]:
        return self.lines[-count:]


@dataclass
class Watch:
    """What following the replay needs."""

    cluster: NewCluster
    target: pg.Target
    target_time: datetime
    start_lsn: int
    bound_lsn: int
    segment_size: int
    say: Callable[[str], None]
    progress: Callable[[int, int, str], None]
    cancel: threading.Event | None
    timeout: float


def follow(watch: Watch) -> Reached:
    """Wait until the server pauses at the target; raise ReplayFailed when it cannot get there."""
    log = ServerLog(watch.cluster.log)
    deadline = time.monotonic() + watch.timeout
    conn: psycopg.Connection | None = None
    restored = 0
    position = watch.start_lsn
    started, seen_running = time.monotonic(), False
    try:
        while True:
            for line in log.read_new():
                if match := RESTORED_RE.search(line):
                    restored += 1
                    segno = walarchive.parse_segment(match.group(1), watch.segment_size)[1]
                    position = max(position, segno * watch.segment_size)
                    if restored == 1 or restored % 64 == 0:
                        watch.say(f"{restored} WAL segments restored from the archive so far ({match.group(1)})")
                elif any(text in line for text in MILESTONES) or is_problem(line):
                    watch.say(line)
            conn, state = _state(conn, watch.target)
            if state is not None:
                in_recovery, replay_lsn, pause_state, _last = state
                if replay_lsn:
                    position = max(position, walarchive.parse_lsn(replay_lsn))
                if not in_recovery:
                    raise ReplayFailed("the server left recovery without pausing at the target (it was promoted "
                                       "by something else, or recovery_target_action was overridden)")
                if pause_state == "paused" and log.find(PAUSED_TEXT):
                    return _reached(log, state, watch.target_time)
            elif postmaster_pid(watch.cluster) is not None:
                seen_running = True
            elif seen_running or log.problems() or time.monotonic() - started > STARTUP_GRACE_SECONDS:
                # pg_ctl returned at once (no --wait): the postmaster may not have written its pid file yet.
                _state_after_exit(log)
            _report(watch, position, restored)
            if watch.cancel is not None and watch.cancel.is_set():
                raise Cancelled("cancelled on request while replaying WAL")
            if time.monotonic() > deadline:
                raise ReplayFailed(f"the target was not reached within {watch.timeout:.0f} s "
                                   "(RECOVERY_REPLAY_TIMEOUT)")
            time.sleep(POLL_SECONDS)
    finally:
        if conn is not None:
            conn.close()


def _state(conn: psycopg.Connection | None, target: pg.Target) -> tuple[psycopg.Connection | None, tuple | None]:
    """(connection, state row); (None, None) while the server does not accept connections."""
    try:
        if conn is None or conn.closed:
            conn = pg.connect(target, purpose="pitr-replay", connect_timeout=2)
        return conn, conn.execute(STATE_SQL).fetchone()
    except psycopg.Error:
        if conn is not None:
            conn.close()
        return None, None


def _state_after_exit(log: ServerLog) -> None:
    time.sleep(POLL_SECONDS)  # the last lines of a dying server may still be on their way to the log
    log.read_new()
    problems = log.problems()
    if problems:
        raise ReplayFailed("the server stopped before reaching the target: " + " | ".join(problems[-3:]))
    raise ReplayFailed("the server is not running and did not reach the target; its log ends: "
                       + " | ".join(log.tail(5)))


def _reached(log: ServerLog, state: tuple, target_time: datetime) -> Reached:
    stop_line = log.find("recovery stopping before")
    match = STOP_RE.search(stop_line)
    if not match:
        raise ReplayFailed("the server paused, but its log does not say it stopped at the target "
                           f"(no 'recovery stopping before ...' line): {' | '.join(log.tail(5))}")
    stop_time = parse_log_time(match.group(3))
    last_commit = state[3]
    if stop_time is not None and stop_time <= target_time:
        raise ReplayFailed(f"the server stopped before a commit at {stop_time}, not after the target {target_time}")
    if last_commit is not None and last_commit > target_time:
        raise ReplayFailed(f"the last replayed commit ({last_commit}) is after the target {target_time}")
    return Reached(stop_line.strip(), int(match.group(2)), stop_time, last_commit, state[1])


def _report(watch: Watch, position: int, restored: int) -> None:
    total = max(watch.bound_lsn - watch.start_lsn, 1)
    done = min(max(position - watch.start_lsn, 0), total)
    watch.progress(done, total, f"replaying WAL: {done / 2**20:.0f} of at most {total / 2**20:.0f} MB to the "
                                f"target, {restored} segments restored")


def promote(target: pg.Target, wait_seconds: int = 120) -> None:
    with pg.connect(target, purpose="pitr-promote") as conn:
        if not conn.execute("SELECT pg_promote(true, %s)", [wait_seconds]).fetchone()[0]:
            raise ReplayFailed(f"pg_promote() did not complete within {wait_seconds} s")
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise ReplayFailed("the server is still in recovery after pg_promote()")
