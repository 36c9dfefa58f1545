"""The promotion (the procedure of kind "promote"), step by step, and how a cancel is handled."""


from __future__ import annotations

from collections.abc import Callable

from portal import audit
from portal.jobs import Reporter
from recovery import objectives, services
from recovery.datadirs import (
    MoveError,
)
from recovery.models import RecoveryRequest
from recovery.promote.checks import check
from recovery.promote.rollback import roll_back
from recovery.promote.stages import CHECK, RETIRE, START, VERIFY, plan
from recovery.promote.swap import retire, save_state, start_production, swap_directories, verify
from recovery.steps import Steps

Say = Callable[[str], None]

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


