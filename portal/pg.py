"""PostgreSQL's programs and connections to managed databases: the client binaries that match the server's major
version, libpq's environment, pg_ctl. The programs run through `portal.programs`, the one runner (time limit,
session, job tag, scrubbed environment, OS user, `ProgramError`).

Connection parameters reach a program through libpq's environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE,
PGSERVICE), only those the target sets, so a password is never in argv or a log: it stays in the passfile or
service file the target names. A libpq variable of the portal's own environment never reaches a child.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import psycopg
from django.conf import settings

from portal import programs

# One typed error and one result for every program; PostgreSQL's keep the names their callers know.
PgToolError = programs.ProgramError
Result = programs.Result
APPLICATION_NAME = "paws360-portal"


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


def bin_dir(major: int | None = None) -> Path:
    return Path(settings.PG_BIN_DIR.format(major=major or settings.PG_DEFAULT_MAJOR))


def bin_path(program: str, major: int | None = None) -> str:
    """The client binary that matches the server's major version."""
    path = bin_dir(major) / program
    if not path.exists():
        raise PgToolError(program, None, [f"{path} not found: install PostgreSQL {major} client programs"])
    return str(path)


def libpq_env(target: Target | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a PostgreSQL program is given beyond the runner's environment: its name in pg_stat_activity, the
    target's libpq variables, then `extra`."""
    return {"PGAPPNAME": APPLICATION_NAME, **(target.libpq_env() if target else {}), **(extra or {})}


def child_env(target: Target | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment a PostgreSQL program gets (the benchmarks run the raw tools with it)."""
    return programs.environment(libpq_env(target, extra))


def run(
    program: str,
    args: list[str],
    *,
    target: Target | None = None,
    major: int | None = None,
    timeout: float | None = None,
    on_stderr: Callable[[str], None] | None = None,
    stdout_sink: Callable[[bytes], object] | None = None,
    capture_stdout: bool = False,
    stdin: bytes | IO[bytes] | None = None,
    cancel: threading.Event | None = None,
    run_as: str | None = None,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
    outlives_job: bool = False,
) -> Result:
    """Run a PostgreSQL program to completion through the runner; raise `PgToolError` unless it exits 0.

    `timeout` defaults to the task's (`programs.task_timeout()`). `stdout_sink` receives standard output in chunks
    as it arrives; `capture_stdout` keeps it instead. `cancel` set from another thread ends the run.
    `outlives_job`: what the program starts (a server) is meant to outlive the job, so the reaper leaves it alone.
    """
    argv = [bin_path(program, major or (target.major if target else None)), *args]
    return programs.run(argv, timeout=programs.task_timeout() if timeout is None else timeout, stdin=stdin,
                        stdout_sink=stdout_sink, capture_stdout=capture_stdout, on_stderr=on_stderr, cancel=cancel,
                        run_as=run_as, cwd=cwd, env=libpq_env(target, env), outlives_job=outlives_job,
                        on_start=on_start)


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
