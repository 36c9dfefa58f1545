"""The programs a job started, found and ended after its worker died.

Each program the runner starts leads a session of its own (so that a cancel ends its whole group), so a worker
killed with SIGKILL leaves them running: a pg_dump goes on writing its half of a backup, a pg_restore goes on
loading a database that the clean-up is about to drop. Every program started while a job runs carries the job's
tag in its environment; the reaper ends the ones that carry a dead job's tag before it cleans up after it.

A job's primary key is unique only within one portal database, so the tag also names the portal instance and
the host (`portal.instance`): another portal on the same host (a test run beside `bin/portal up`) never has its
programs ended by this one's reaper.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from portal import instance

if TYPE_CHECKING:
    from portal.jobs import Job

TAG = "PAWS360_JOB"
GRACE_SECONDS = 5.0


def tag_of(job: Job) -> str:
    return f"{instance.label()}:{job._meta.label_lower}:{job.pk}"


@contextmanager
def tagged(job: Job) -> Iterator[None]:
    """While the block runs, the programs this process starts carry the job's tag (a worker process runs one job
    at a time)."""
    previous = os.environ.get(TAG)
    os.environ[TAG] = tag_of(job)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TAG, None)
        else:
            os.environ[TAG] = previous


def carrying(tag: str) -> list[int]:
    """The pids of the running processes whose environment holds the tag (another user's need root to read)."""
    wanted = f"{TAG}={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def end(job: Job, grace: float = GRACE_SECONDS) -> list[int]:
    """SIGTERM (and SIGCONT) to each program of `job` still running, SIGKILL to those left after `grace` seconds.
    Their pids."""
    tag = tag_of(job)
    found = carrying(tag)
    _send(found, signal.SIGTERM)
    _send(found, signal.SIGCONT)  # a stopped program (a debugger, a tar stuck on a hung disk) must act on it too
    deadline = time.monotonic() + grace
    while (left := carrying(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    _send(left, signal.SIGKILL)
    return found


def _send(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
