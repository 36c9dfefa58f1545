"""Outcome rows for long work: claimed once, reported while running, reaped when their worker died.

A view creates the row `queued` and queues a task with its primary key on commit. The task calls
`run_job()`, which claims the row with a conditional update (`queued -> running`): a second delivery of
the same task finds it claimed and does nothing. A worker that died leaves a `running` row that
`reap_dead_jobs()` marks `failed` with the reason, ends the programs it left running (`portal.orphans`) and
calls what its app registered (`on_reaped`) to undo the rest.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection, models
from django.db.models.functions import Concat
from django.utils import timezone

from portal import audit, orphans
from portal.models import ManagedCluster, PortalDatabaseServer

log = logging.getLogger(__name__)
HOST = socket.gethostname()
LOG_LIMIT = 200_000


def process_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: tells a live pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent (an orphan's, until init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Job(models.Model):
    """Fields and behaviour shared by every outcome model (Backup, RecoveryRequest, MaintenanceRun...)."""

    class Status(models.TextChoices):
        """Every job's states; the approval states only for work a second person approves (a recovery)."""

        REQUESTED = "requested", "Awaiting approval"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"

    audit_action = "job"

    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED, db_index=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    log = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=150, blank=True, help_text="A username, or schedule:<name>.")
    worker_host = models.CharField(max_length=255, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)
    worker_start_ticks = models.BigIntegerField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_note = models.CharField(max_length=255, blank=True)
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED, self.Status.REJECTED)

    @property
    def duration(self) -> timedelta | None:
        if not self.started:
            return None
        return (self.finished or timezone.now()) - self.started

    @property
    def percent(self) -> int | None:
        if not self.progress_total:
            return None
        return max(0, min(100, round(100 * self.progress_done / self.progress_total)))

    @classmethod
    def claim(cls, pk: int) -> Job | None:
        """`queued -> running` for this worker; None when another delivery got there first."""
        now = timezone.now()
        pid = os.getpid()
        claimed = cls.objects.filter(pk=pk, status=cls.Status.QUEUED).update(
            status=cls.Status.RUNNING,
            started=now,
            heartbeat=now,
            worker_host=HOST,
            worker_pid=pid,
            worker_start_ticks=process_start_ticks(pid),
        )
        return cls.objects.get(pk=pk) if claimed == 1 else None

    def finish(self, status: str, error: str = "") -> bool:
        """Record the outcome, once: only a running row is finished."""
        self.status, self.error, self.finished = status, error[:10_000], timezone.now()
        done = type(self).objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            status=status, error=self.error, finished=self.finished
        )
        return done == 1

    def worker_is_dead(self) -> str:
        """The reason this running row has no live worker, or "" if it may still have one."""
        if self.worker_host == HOST and self.worker_pid:
            ticks = process_start_ticks(self.worker_pid)
            if ticks is None or ticks != self.worker_start_ticks:
                return f"worker process {self.worker_pid} on {HOST} is gone"
        stale = timedelta(seconds=settings.JOB_STALE_SECONDS)
        if self.heartbeat and timezone.now() - self.heartbeat > stale:
            since = f"{self.heartbeat:%Y-%m-%d %H:%M:%S}"
            return f"no word from worker {self.worker_pid} on {self.worker_host} since {since}"
        return ""


JobT = TypeVar("JobT", bound=Job)
T = TypeVar("T")


class Reporter:
    """What running work uses to report: log lines and progress, written to the row once a second by a
    thread of its own (callbacks may come from any thread), which also watches for a cancel request."""

    def __init__(self, job: Job, interval: float = 1.0) -> None:
        self.job = job
        self.interval = interval
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._progress: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"report-{job.pk}", daemon=True)

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line.rstrip("\n") + "\n")

    def progress(self, done: int | None = None, total: int | None = None, note: str | None = None) -> None:
        with self._lock:
            for key, value in (("progress_done", done), ("progress_total", total), ("progress_note", note)):
                if value is not None:
                    self._progress[key] = value

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        until_recorded(self.flush, f"the log of {self.job}")

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = "".join(self._lines), []
            progress, self._progress = self._progress, {}
        model = type(self.job)
        rows = model.objects.filter(pk=self.job.pk)
        updates: dict[str, object] = {"heartbeat": timezone.now(), **progress}
        if lines:
            updates["log"] = Concat(models.F("log"), models.Value(lines[-LOG_LIMIT:]))
        try:
            rows.update(**updates)
            cancel = rows.filter(cancel_requested=True).exists()
        except DatabaseError:  # the portal's database is away: keep what was reported for the next flush
            with self._lock:
                self._lines.insert(0, lines)
                self._progress = {**progress, **self._progress}
            connection.close()
            raise
        if cancel:
            self.cancel.set()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.flush()
                except DatabaseError as exc:
                    log.warning("progress of %s not recorded (the portal's database?): %s", self.job, exc)
        finally:
            connection.close()


@contextmanager
def reporting(job: Job) -> Iterator[Reporter]:
    reporter = Reporter(job)
    reporter.start()
    try:
        yield reporter
    finally:
        reporter.stop()


class Cancelled(Exception):
    pass


def until_recorded(write: Callable[[], T], what: str, *, give_up_after: float | None = None) -> T:
    """Write to the portal's database, retrying while it does not answer (restarted, failed over): the outcome
    of work that was done must not be lost to a moment without the database. Gives up after the task timeout."""
    deadline = time.monotonic() + (settings.TASK_TIMEOUT if give_up_after is None else give_up_after)
    pause = 0.5
    while True:
        try:
            return write()
        except DatabaseError as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("could not record %s (retrying in %.0f s): %s", what, pause, exc)
            connection.close()
            time.sleep(pause)
            pause = min(pause * 2, 15.0)


def run_job(model: type[JobT], pk: int, work: Callable[[JobT, Reporter], None]) -> JobT | None:
    """Claim the row, do the work, record the outcome and an audit event. Never runs a job twice."""
    job = model.claim(pk)
    if job is None:
        log.info("%s %s was not queued (already claimed or finished); nothing to do", model.__name__, pk)
        return None
    actor = job.triggered_by or "system"
    audit.record(f"{job.audit_action}.start", actor=actor, obj=job, outcome=audit.Outcome.STARTED)
    try:
        refuse_portal_database_server(job)
        with orphans.tagged(job), reporting(job) as reporter:
            work(job, reporter)
            if reporter.cancel.is_set():
                raise Cancelled("cancelled on request")
    except Cancelled as exc:
        status, error = Job.Status.CANCELLED, str(exc)
    except Exception as exc:
        log.exception("%s %s failed", model.__name__, pk)
        status, error = Job.Status.FAILED, str(exc) or type(exc).__name__
    else:
        status, error = Job.Status.SUCCEEDED, ""
    until_recorded(lambda: record_outcome(job, actor, status, error), f"the outcome of {job}")
    return job


def refuse_portal_database_server(job: Job) -> None:
    """No job runs against the server of the portal's own database (its status refresh found it out)."""
    cluster = getattr(job, "cluster", None)
    if isinstance(cluster, ManagedCluster) and cluster.holds_portal_database:
        raise PortalDatabaseServer(f"{cluster}: {PortalDatabaseServer.__doc__}")


def record_outcome(job: Job, actor: str, status: str, error: str) -> None:
    job.finish(status, error)
    job.refresh_from_db()
    outcome = audit.Outcome.SUCCESS if job.status == Job.Status.SUCCEEDED else audit.Outcome.FAILURE
    audit.record(f"{job.audit_action}.finish", actor=actor, obj=job, outcome=outcome,
                 details={"status": job.status, "error": job.error})


def job_models() -> list[type[Job]]:
    return [m for m in apps.get_models() if issubclass(m, Job)]


# What undoes, outside the database, the rest of a dead run of a kind of job (its files, its servers), once the
# reaper failed the row and ended its programs; registered by the apps (`on_reaped`, from AppConfig.ready()).
REAP_HANDLERS: dict[type[Job], Callable[[Any], None]] = {}


def on_reaped(model: type[JobT], handler: Callable[[JobT], None]) -> None:
    REAP_HANDLERS[model] = handler


def reap_dead_jobs() -> int:
    """Fail every `running` row whose worker is gone, with the reason. Returns how many."""
    reaped = 0
    for model in job_models():
        for job in model.objects.filter(status=Job.Status.RUNNING):
            reason = job.worker_is_dead()
            if reason and job.finish(Job.Status.FAILED, f"reaped: {reason}"):
                ended = orphans.end(job)  # before the clean-up: nothing may still be writing
                audit.record(f"{job.audit_action}.reaped", obj=job, outcome=audit.Outcome.FAILURE,
                             details={"reason": reason, "programs_ended": ended})
                reaped += 1
                try:
                    if handler := REAP_HANDLERS.get(model):
                        handler(job)
                except Exception:  # one clean-up that fails must not stop the reaper
                    log.exception("cleaning up after reaped %s %s failed", model.__name__, job.pk)
    return reaped
