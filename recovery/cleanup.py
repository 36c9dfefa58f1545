"""Undoing what a failed recovery left half done, so that a failure never makes things worse.

The same undo runs in the worker when a procedure fails, and from the reaper (`RecoveryRequest.on_reaped`) when
the worker died: the database the recovery was restoring into (`result_database` while it works, on the scratch
cluster for drills and single-table recoveries: `scratch_cluster`) is dropped unless it has become production,
production accepts connections again if a swap was under way, and the application services that were stopped are
started again. Production itself is never dropped (`databases.drop` refuses).

Each kind's undo is registered here (`register`, by RecoveryConfig.ready()); a kind without one has nothing to undo.
Every undo of a kind runs, so each must do nothing when the run it undoes was not its own (a drill's kinds share one
list).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from portal import audit
from portal.models import ManagedCluster
from recovery import databases, services
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.steps import Steps

Say = Callable[[str], None]
Undo = Callable[[RecoveryRequest, Say], None]
UNDO: dict[str, list[Undo]] = {}

STOPPED = (RecoveryStep.Status.RUNNING, RecoveryStep.Status.SUCCEEDED, RecoveryStep.Status.FAILED)


def register(kind: str, undo: Undo) -> None:
    if undo not in UNDO.setdefault(kind, []):
        UNDO[kind].append(undo)


def working_cluster(request: RecoveryRequest) -> ManagedCluster:
    """Where the recovery's working database is: the scratch cluster, when it restored into scratch."""
    return request.scratch_cluster or request.cluster


def drop_working_database(request: RecoveryRequest, say: Say) -> None:
    """Drop the database the recovery was restoring into, unless it is (now) production."""
    working = request.result_database
    if not working or (request.database is not None and working == request.database.name):
        return
    cluster = working_cluster(request)
    if databases.exists(cluster, working):
        databases.drop(cluster, working)
        where = f" on the scratch cluster {cluster}" if cluster.scratch else ""
        say(f"dropped {working}{where}, which the recovery did not finish; production was not touched")


def reopen_after_swap(request: RecoveryRequest, say: Say) -> None:
    """A worker that died during a swap may leave production, or its old self, refusing connections."""
    before = request.verification.get("before_database")
    if not before or request.database is None:
        return
    with databases.admin_connection(request.cluster) as conn:
        refused = [name for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s) AND NOT datallowconn",
            [[request.database.name, before]]).fetchall()]
    for name in refused:
        databases.allow_connections(request.cluster, name, True)
        say(f"{name} accepts connections again")


def services_left_stopped(request: RecoveryRequest) -> bool:
    steps = {step.name: step.status for step in request.steps.all()}
    return steps.get(services.STOP_STEP) in STOPPED and steps.get(services.START_STEP) != RecoveryStep.Status.SUCCEEDED


def restart_services(request: RecoveryRequest, say: Say) -> list[str]:
    """Start the services the dead worker stopped, recorded on the request's start step."""
    step = request.steps.filter(name=services.START_STEP).first()

    def both(line: str) -> None:
        say(line)
        if step is not None:
            RecoveryStep.objects.filter(pk=step.pk).update(log=Concat(F("log"), Value(f"[clean-up] {line}\n")))

    both("the worker died with the application services stopped: starting them")
    started = timezone.now()
    errors = services.restart_each(services.configured(), both)
    if step is not None:
        RecoveryStep.objects.filter(pk=step.pk).update(
            started=started, finished=timezone.now(), error="; ".join(errors),
            status=RecoveryStep.Status.FAILED if errors else RecoveryStep.Status.SUCCEEDED)
    return errors


def undo_restore(request: RecoveryRequest, say: Say) -> None:
    drop_working_database(request, say)
    reopen_after_swap(request, say)


@contextlib.contextmanager
def scratch_dropped(request: RecoveryRequest, steps: Steps, step_name: str) -> Iterator[None]:
    """Run the block, then drop the recovery's scratch database as the step `step_name`, whatever happened."""
    try:
        yield
    except BaseException:
        steps.skip_rest()
        with contextlib.suppress(Exception), steps.run(step_name) as step:
            undo_restore(request, lambda line: steps.log(step, line))
        raise
    with steps.run(step_name) as step:
        databases.drop(working_cluster(request), request.result_database)
        steps.log(step, f"dropped {request.result_database}")


def after_reaped(request: RecoveryRequest) -> None:
    """The worker died: record it on the steps, undo what it left, start the services it stopped."""
    request.refresh_from_db()

    def say(line: str) -> None:
        RecoveryRequest.objects.filter(pk=request.pk).update(log=Concat(F("log"), Value(f"[clean-up] {line}\n")))

    now = timezone.now()
    request.steps.filter(status=RecoveryStep.Status.RUNNING).update(
        status=RecoveryStep.Status.FAILED, finished=now, error=request.error)
    request.steps.filter(status=RecoveryStep.Status.PENDING).update(status=RecoveryStep.Status.SKIPPED)
    problems = []
    for undo in UNDO.get(request.kind, []):
        try:
            undo(request, say)
        except Exception as exc:  # the services must still be started; the problem is reported
            problems.append(f"undo: {exc}")
            say(f"FAILED to undo: {exc}")
    if services_left_stopped(request):
        problems += restart_services(request, say)
    outcome = audit.Outcome.FAILURE if problems else audit.Outcome.SUCCESS
    audit.record("recovery.cleanup", obj=request, target=str(request.cluster), outcome=outcome,
                 details={"after": "worker died", "problems": problems})
