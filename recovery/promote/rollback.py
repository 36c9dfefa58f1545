"""After a failure, in the worker or from the reaper when the worker died: nothing made worse. Before production
stopped, the recovered cluster and the services start again; after its data directory moved, it is put back."""


from __future__ import annotations

from collections.abc import Callable

from portal import audit, jobs
from recovery.datadirs import (
    MoveError,
    put_back_settings,
    rename,
)
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.promote.swap import Swap
from recovery.steps import Steps

Say = Callable[[str], None]

def put_back(request: RecoveryRequest, say: Say) -> None:
    """Production running from its own, complete data directory again; the recovered cluster as it was."""
    state = request.promotion
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


def roll_back(request: RecoveryRequest, steps: Steps) -> list[str]:
    """In the worker: put production back (said in the failed step's log); what went wrong. (The procedure's
    skeleton starts the services again: `recovery.procedure.undone_on_failure`.)"""
    failed = next((step for step in steps.steps if step.status == RecoveryStep.Status.FAILED), None)
    log = steps.logger(failed.name) if failed else steps.reporter.log
    problems: list[str] = []
    request.refresh_from_db(fields=["promotion"])
    if request.promotion:  # otherwise the checks refused it: nothing was stopped
        try:
            put_back(request, lambda line: log(f"[roll back] {line}"))
        except Exception as exc:  # the services must still be started; the problem is reported
            problems.append(f"putting production back failed: {exc}")
            log(f"[roll back] FAILED: {exc}")
        rolled = audit.Outcome.FAILURE if problems else audit.Outcome.SUCCESS
        audit.record("recovery.promote.rollback", actor="system:recovery", obj=request, target=str(request.cluster),
                     outcome=rolled, details={"problems": problems, "state": request.promotion})
    return problems


def undo_dead_run(request: RecoveryRequest, say: Say) -> None:
    """The reaper's undo: only on the host whose directories these are."""
    if request.worker_host not in ("", jobs.HOST):
        say(f"production's data directories are on {request.worker_host}: put back there")
        return
    put_back(request, say)
