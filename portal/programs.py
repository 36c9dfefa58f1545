"""The one place that starts programs: PostgreSQL's (through `portal.pg`, which picks the client binaries and sets
libpq's environment), age, GNU tar, zstd and the application service commands. The standalone archive command
(`backups/wal/walarchive.py`, run by PostgreSQL without Django) is the one exception: it spawns zstd itself.

Every program started here:
- from an argument list, never a shell;
- with a time limit (`timeout`, always given; `task_timeout()` for long ones: no program outlives its task) and, when
  given, a cancel event; either ends its whole process group, for the program leads a session of its own:
  SIGTERM, then SIGKILL after a grace period. Only a program that something else ends (a daemon's receiver,
  `timeout=math.inf`) runs without a limit, and then it must have a cancel event;
- with the running job's tag in its environment (`portal.orphans`: the reaper ends the programs of a job whose
  worker died); `outlives_job` leaves it out for what is meant to outlive the job (a server started by pg_ctl, an
  application service started again);
- in a scrubbed environment: of the portal's own it inherits only `INHERITED` (PATH, HOME, USER, LOGNAME, locale
  and TZ, TMPDIR) and the job tag. libpq's variables, DATABASE_URL, Django's secret key, object-storage
  credentials and everything else stay behind; the caller adds what the program needs (`env`: a target's libpq
  variables, PGAPPNAME, LC_ALL);
- as another OS user when asked (`run_as`) and the portal runs as root, with that user's HOME, USER and LOGNAME;
- with its standard error streamed line by line to a callback and the last lines kept. A failure (a non-zero
  exit, the time limit, a cancel, a program that cannot start) raises `ProgramError` with the program, its exit
  code and that tail.

`run()` runs a program to completion (stdin from bytes or a file, stdout to a sink, captured or discarded).
`started()` is for streams that the caller drives itself (age between a producer and a file, tar fed by the reader
that hashes its input): it yields the running program with its pipes, and memory stays flat whatever the size.
"""

from __future__ import annotations

import collections
import math
import os
import pwd
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings

from portal import orphans

PIPE = subprocess.PIPE
STDERR_TAIL_LINES = 200
READ_CHUNK = 1024 * 1024
KILL_GRACE_SECONDS = 5.0
# What a child inherits from the portal's environment (besides the job tag): nothing that names a database or
# holds a secret.
INHERITED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
INHERITED_PREFIX = "LC_"
_REASON = re.compile(r"\b(FATAL|ERROR|PANIC):|\berror:")

Stdin = int | IO[bytes] | None


def task_timeout() -> float:
    """The time limit of a long program (a dump, a restore, the extraction of a large backup): its task's own, at
    which django-q2 ends the task anyway."""
    return float(settings.TASK_TIMEOUT)


class ProgramError(Exception):
    """A program failed: it exited non-zero, timed out, was cancelled or could not start."""

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


def account(os_user: str | None) -> pwd.struct_passwd | None:
    """The OS user a program runs as instead of the portal's own: only when the portal runs as root and `os_user`
    names another user (PostgreSQL refuses to run as root); None otherwise."""
    if not os_user or os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(os_user)
    return None if entry.pw_uid == os.geteuid() else entry


def give(path: Path, os_user: str | None) -> None:
    """`path` made `os_user`'s, for a program that runs as that user (only when the portal runs as root)."""
    if (entry := account(os_user)) is not None:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def environment(extra: Mapping[str, str] | None = None, *, run_as: str | None = None,
                outlives_job: bool = False) -> dict[str, str]:
    """What a child's environment holds: `INHERITED` of the portal's, the job tag unless it `outlives_job`, the
    identity of the user it runs as, then `extra`."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIX)}
    if not outlives_job and (tag := os.environ.get(orphans.TAG)):
        env[orphans.TAG] = tag
    if (entry := account(run_as)) is not None:
        env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    env.update(extra or {})
    return env


def _switch(run_as: str | None) -> dict[str, object]:
    """Popen arguments that run the child as another OS user."""
    if (entry := account(run_as)) is None:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class Running:
    """A program started by `started()`: its pid and, where asked for, the pipes to its standard input and output.
    Another thread may `end()` it."""

    def __init__(self, proc: subprocess.Popen[bytes], program: str) -> None:
        self.proc = proc
        self.program = program
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.timed_out = False
        self.cancelled = False
        self.exited = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started_at = time.monotonic()
        self.result: Result | None = None
        self.finished = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.proc.stdout

    def wait(self) -> Result:
        """Close the pipes to the program and wait for it to exit: its Result, or `ProgramError` unless it exited 0
        within its time limit and was not cancelled. What it wrote to a stdout pipe must have been read by then."""
        if self.finished:
            if self.result is None:
                raise self.error()
            return self.result
        self.finished = True
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with suppress(BrokenPipeError):
                    pipe.close()
        self.proc.wait()
        self.stop()
        if self.proc.returncode != 0 or self.timed_out or self.cancelled:
            raise self.error()
        self.result = Result(self.program, 0, list(self.tail), duration=time.monotonic() - self.started_at,
                             pid=self.proc.pid)
        return self.result

    def error(self) -> ProgramError:
        return ProgramError(self.program, self.proc.returncode, self.tail, timed_out=self.timed_out,
                            cancelled=self.cancelled)

    def end(self) -> None:
        """End the program and everything it started now: SIGTERM to its group, SIGKILL after a grace period."""
        _kill_group(self.proc)

    def stop(self) -> None:
        """The run is over: the program is ended if it still runs, the helper threads joined."""
        self.exited.set()
        if self.proc.poll() is None:
            _kill_group(self.proc)
        for thread in self.threads:
            thread.join(timeout=KILL_GRACE_SECONDS * 2)


@contextmanager
def started(
    argv: list[str],
    *,
    timeout: float,
    stdin: Stdin = None,
    stdout: int | None = None,
    on_stderr: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    run_as: str | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    umask: int = -1,
    outlives_job: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> Iterator[Running]:
    """Start `argv` and yield it running. `stdin`: PIPE, a file, or None (nothing); `stdout`: PIPE or None
    (discarded). When the block ends, the program's pipes are closed and it is waited for (`Running.wait()`: it
    raises `ProgramError` unless the program exited 0), unless the block did that itself; when the block raises,
    the program and its group are ended, and the error is a `ProgramError` if the time limit or the cancel had
    ended the program first."""
    if timeout is None or not timeout > 0 or (math.isinf(timeout) and cancel is None):
        raise ValueError(f"{argv[0] if argv else 'a program'}: a time limit is needed (infinite only with a cancel "
                         f"event that ends it), not {timeout!r}")
    running = _start(argv, stdin=stdin, stdout=stdout, run_as=run_as, cwd=cwd, env=env, umask=umask,
                     outlives_job=outlives_job)
    _watch_in_threads(running, timeout, cancel, on_stderr)
    try:
        if on_start:
            on_start(running.pid)
        yield running
    except BaseException as exc:
        running.finished = True
        running.stop()
        if running.timed_out or running.cancelled:
            raise running.error() from exc
        raise
    if not running.finished:
        running.wait()


def run(
    argv: list[str],
    *,
    timeout: float,
    stdin: bytes | IO[bytes] | None = None,
    stdout_sink: Callable[[bytes], object] | None = None,
    capture_stdout: bool = False,
    on_stderr: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    run_as: str | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    outlives_job: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> Result:
    """Run `argv` to completion; raise `ProgramError` unless it exits 0. `stdout_sink` receives standard output in
    chunks as it arrives (a dump being written, hashed on the way); `capture_stdout` keeps it instead."""
    feed = stdin if isinstance(stdin, bytes) else None
    captured = bytearray()
    with started(argv, timeout=timeout, stdin=PIPE if feed is not None else stdin,
                 stdout=PIPE if (stdout_sink or capture_stdout) else None, on_stderr=on_stderr, cancel=cancel,
                 run_as=run_as, cwd=cwd, env=env, outlives_job=outlives_job, on_start=on_start) as running:
        feeder = _feeding(running, feed) if feed is not None else None
        if running.stdout is not None:
            sink = stdout_sink or captured.extend
            while chunk := running.stdout.read(READ_CHUNK):
                sink(chunk)
        if feeder is not None:
            feeder.join()
    result = running.wait()
    result.stdout = bytes(captured)
    return result


def _start(argv: list[str], *, stdin: Stdin, stdout: int | None, run_as: str | None, cwd: str | Path | None,
           env: Mapping[str, str] | None, umask: int, outlives_job: bool) -> Running:
    if not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError("a program and its arguments must be strings")
    program = Path(argv[0]).name
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.DEVNULL if stdout is None else stdout,
            stderr=subprocess.PIPE,
            env=environment(env, run_as=run_as, outlives_job=outlives_job),
            cwd=cwd,
            start_new_session=True,
            umask=umask,
            **_switch(run_as),  # type: ignore[arg-type]
        )
    except OSError as exc:
        raise ProgramError(program, None, [str(exc)]) from exc
    return Running(proc, program)


def _watch_in_threads(running: Running, timeout: float, cancel: threading.Event | None,
                      on_stderr: Callable[[str], None] | None) -> None:
    running.threads = [
        threading.Thread(target=_pump_stderr, args=(running, on_stderr), daemon=True),
        threading.Thread(target=_watch, args=(running, timeout, cancel), daemon=True),
    ]
    for thread in running.threads:
        thread.start()


def _feeding(running: Running, data: bytes) -> threading.Thread:
    def feed() -> None:
        assert running.stdin is not None
        try:
            running.stdin.write(data)
            running.stdin.close()
        except (BrokenPipeError, ValueError):  # the program exited, or was ended, before reading it all
            pass

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def _pump_stderr(running: Running, on_stderr: Callable[[str], None] | None) -> None:
    assert running.proc.stderr is not None
    for raw in running.proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        running.tail.append(line)
        if on_stderr:
            on_stderr(line)


def _watch(running: Running, timeout: float, cancel: threading.Event | None) -> None:
    deadline = time.monotonic() + timeout
    while running.proc.poll() is None:
        if cancel is not None and cancel.is_set():
            running.cancelled = True
        elif time.monotonic() > deadline:
            running.timed_out = True
        if running.cancelled or running.timed_out:
            _kill_group(running.proc)
            return
        if running.exited.wait(0.1):  # the run is over, or is ending the program itself: nothing left to watch
            return


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the child and everything it started: SIGTERM to the group (and SIGCONT, for a stopped one), SIGKILL
    after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            if sig == signal.SIGTERM:
                os.killpg(proc.pid, signal.SIGCONT)
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
