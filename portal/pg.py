"""The one place that runs PostgreSQL programs and opens connections to managed databases.

Argument lists, never a shell. Connection parameters reach a program through libpq's environment
(PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE, PGSERVICE), so a password is never in argv or a log:
it stays in the passfile or service file the target names. Every run has a timeout and can be
cancelled; both end the whole process group. Standard error is streamed line by line to a callback and
its tail kept; a non-zero exit raises `PgToolError` with the program, exit code and that tail.
"""

from __future__ import annotations

import collections
import os
import pwd
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import psycopg
from django.conf import settings

from portal import orphans

STDERR_TAIL_LINES = 200
_REASON = re.compile(r"\b(FATAL|ERROR|PANIC):|\berror:")
READ_CHUNK = 1024 * 1024
KILL_GRACE_SECONDS = 5.0

# libpq variables a child must not inherit from the portal's own environment.
_LIBPQ_VARS = (
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASSFILE",
    "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGAPPNAME", "PGSSLMODE", "PGCONNECT_TIMEOUT",
)


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect. Credentials are by reference: a passfile path or a service name."""

    host: str
    port: int
    user: str
    dbname: str = "postgres"
    passfile: str = ""
    service: str = ""
    major: int | None = None

    def on(self, dbname: str) -> Target:
        return replace(self, dbname=dbname)

    def libpq_env(self) -> dict[str, str]:
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname}
        if self.passfile:
            env["PGPASSFILE"] = self.passfile
        if self.service:
            env["PGSERVICE"] = self.service
        return env

    def conninfo(self) -> dict[str, str | int]:
        info: dict[str, str | int] = {"host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname}
        if self.passfile:
            info["passfile"] = self.passfile
        if self.service:
            info["service"] = self.service
        return info

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


class PgToolError(Exception):
    """A PostgreSQL program failed: it exited non-zero, timed out, was cancelled or could not start."""

    def __init__(
        self,
        program: str,
        returncode: int | None,
        stderr_tail: Iterable[str] = (),
        *,
        timed_out: bool = False,
        cancelled: bool = False,
    ) -> None:
        self.program = program
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail)
        self.timed_out = timed_out
        self.cancelled = cancelled
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.timed_out:
            what = "timed out"
        elif self.cancelled:
            what = "was cancelled"
        elif self.returncode is None:
            what = "could not start"
        else:
            what = f"exited with code {self.returncode}"
        last = "; ".join(self.reason_lines())
        return f"{self.program} {what}" + (f": {last}" if last else "")

    def reason_lines(self) -> list[str]:
        """The server's or the program's own reason (its FATAL, ERROR or error: lines, the last two of them), then
        the last line; without such lines, the last three."""
        lines = [line.strip() for line in self.stderr_tail if line.strip()]
        reasons = [line for line in lines if _REASON.search(line)][-2:]
        if not reasons:
            return lines[-3:]
        return reasons + ([lines[-1]] if lines[-1] not in reasons else [])


@dataclass
class Result:
    program: str
    returncode: int
    stderr: list[str]
    stdout: bytes = b""
    duration: float = 0.0
    pid: int = 0


@dataclass
class _Run:
    """The bookkeeping of one child process while it runs."""

    proc: subprocess.Popen[bytes]
    program: str
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES))
    timed_out: bool = False
    cancelled: bool = False
    exited: threading.Event = field(default_factory=threading.Event)


def bin_dir(major: int | None = None) -> Path:
    return Path(settings.PG_BIN_DIR.format(major=major or settings.PG_DEFAULT_MAJOR))


def bin_path(program: str, major: int | None = None) -> str:
    """The client binary that matches the server's major version."""
    path = bin_dir(major) / program
    if not path.exists():
        raise PgToolError(program, None, [f"{path} not found: install PostgreSQL {major} client programs"])
    return str(path)


def child_env(target: Target | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LIBPQ_VARS}
    env["PGAPPNAME"] = "paws360-portal"
    if target is not None:
        env.update(target.libpq_env())
    env.update(extra or {})
    return env


def _environment(target: Target | None, extra: dict[str, str] | None, outlives_job: bool) -> dict[str, str]:
    env = child_env(target, extra)
    if outlives_job:  # not one of the job's programs for the reaper (portal.orphans) to end
        env.pop(orphans.TAG, None)
    return env


def _demote(run_as: str | None) -> dict[str, object]:
    """Popen arguments that run the child as another OS user (PostgreSQL refuses to run as root)."""
    if not run_as or os.geteuid() != 0 or run_as == pwd.getpwuid(os.geteuid()).pw_name:
        return {}
    entry = pwd.getpwnam(run_as)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def run(
    program: str,
    args: list[str],
    *,
    target: Target | None = None,
    major: int | None = None,
    timeout: float | None = None,
    on_stderr: Callable[[str], None] | None = None,
    stdout_sink: Callable[[bytes], None] | None = None,
    capture_stdout: bool = False,
    stdin: bytes | IO[bytes] | None = None,
    cancel: threading.Event | None = None,
    run_as: str | None = None,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    outlives_job: bool = False,
) -> Result:
    """Run a PostgreSQL program to completion; raise `PgToolError` unless it exits 0.

    `stdout_sink` receives standard output in chunks as it arrives (a dump being written, hashed on the
    way); `capture_stdout` keeps it instead. `cancel` set from another thread ends the run. `outlives_job`: what
    the program starts (a server) is meant to outlive the job, so the reaper leaves it alone.
    """
    if not all(isinstance(a, str) for a in args):
        raise TypeError("arguments must be strings")
    argv = [bin_path(program, major or (target.major if target else None)), *args]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if isinstance(stdin, bytes) else (stdin or subprocess.DEVNULL),
            stdout=subprocess.PIPE if (stdout_sink or capture_stdout) else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_environment(target, env, outlives_job),
            cwd=cwd,
            start_new_session=True,
            **_demote(run_as),  # type: ignore[arg-type]
        )
    except OSError as exc:
        raise PgToolError(program, None, [str(exc)]) from exc
    state = _Run(proc, program)
    if on_start:
        on_start(proc.pid)
    threads = [
        threading.Thread(target=_pump_stderr, args=(state, on_stderr), daemon=True),
        threading.Thread(target=_watch, args=(state, timeout, cancel), daemon=True),
    ]
    if isinstance(stdin, bytes):
        threads.append(threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True))
    for thread in threads:
        thread.start()
    captured = bytearray()
    try:
        if proc.stdout is not None:
            sink = stdout_sink or captured.extend
            while chunk := proc.stdout.read(READ_CHUNK):
                sink(chunk)
        proc.wait()
    finally:
        state.exited.set()
        if proc.poll() is None:
            _kill_group(proc)
        for thread in threads:
            thread.join(timeout=KILL_GRACE_SECONDS * 2)
    if proc.returncode != 0 or state.timed_out or state.cancelled:
        raise PgToolError(program, proc.returncode, state.tail, timed_out=state.timed_out, cancelled=state.cancelled)
    return Result(program, proc.returncode, list(state.tail), bytes(captured), time.monotonic() - started, proc.pid)


def _pump_stderr(state: _Run, on_stderr: Callable[[str], None] | None) -> None:
    assert state.proc.stderr is not None
    for raw in state.proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        state.tail.append(line)
        if on_stderr:
            on_stderr(line)


def _feed_stdin(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass


def _watch(state: _Run, timeout: float | None, cancel: threading.Event | None) -> None:
    deadline = time.monotonic() + timeout if timeout else None
    while state.proc.poll() is None:
        if cancel is not None and cancel.is_set():
            state.cancelled = True
        elif deadline is not None and time.monotonic() > deadline:
            state.timed_out = True
        if state.cancelled or state.timed_out:
            _kill_group(state.proc)
            return
        if state.exited.wait(0.1):  # the run is over, or is ending the program itself: nothing left to watch
            return


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the child and everything it started: SIGTERM to the group, SIGKILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def connect(
    target: Target,
    *,
    purpose: str = "portal",
    statement_timeout_ms: int | None = None,
    connect_timeout: int = 10,
    autocommit: bool = True,
) -> psycopg.Connection:
    """A psycopg connection to a managed database, named in pg_stat_activity and with a statement timeout."""
    timeout_ms = settings.PG_STATEMENT_TIMEOUT_MS if statement_timeout_ms is None else statement_timeout_ms
    return psycopg.connect(
        **target.conninfo(),
        application_name=f"paws360-portal/{purpose}"[:63],
        options=f"-c statement_timeout={int(timeout_ms)}",
        connect_timeout=connect_timeout,
        autocommit=autocommit,
    )


def server_major(target: Target) -> int:
    with connect(target, purpose="version", connect_timeout=5) as conn:
        return conn.info.server_version // 10000


def pg_ctl(
    action: str,
    data_dir: str | Path,
    *,
    major: int | None = None,
    run_as: str | None = "postgres",
    log_file: str | Path | None = None,
    timeout: float = 300,
    wait: bool = True,
) -> Result:
    """Control a local cluster with pg_ctl as the OS user that owns it.

    Settings such as the port belong in the cluster's configuration files, not in `pg_ctl -o`, whose
    string pg_ctl hands to a shell. `wait=False` returns once the server is launched (a recovery that the
    caller follows itself).
    """
    args = [action, f"--pgdata={data_dir}"]
    if action in ("start", "stop", "restart", "promote"):
        args += ["--wait", f"--timeout={int(timeout)}"] if wait else ["--no-wait"]
    if action == "stop":
        args += ["--mode=fast"]
    if log_file:
        args += [f"--log={log_file}"]
    return run("pg_ctl", args, major=major, run_as=run_as, timeout=timeout + 10, outlives_job=True)
