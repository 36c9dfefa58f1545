"""The promotion (the procedure of kind "promote"), step by step, and how a cancel is handled."""


from __future__ import annotations

from collections.abc import Callable

from portal import audit
from portal.jobs import Reporter
from recovery import procedure, services
from recovery.datadirs import MoveError
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
    with procedure.undone_on_failure(request, steps, app, lambda: roll_back(request, steps), MoveError):
        with steps.run(CHECK):
            production, recovered, swap = check(request, steps.logger(CHECK))
        if app:
            procedure.stop_services(steps, app)
        swap_directories(request, steps, swap)
        with steps.run(START):
            start_production(production, swap, steps.logger(START))
        with steps.run(VERIFY):
            verify(request, production, swap, steps.logger(VERIFY), reporter.cancel)
        save_state(request, swap, "promoted")
        ignore_cancel(request, reporter)
        with steps.run(RETIRE):
            retire(request, production, recovered, steps.logger(RETIRE))
    seconds = procedure.finish(request, steps, app, "production verified")
    ignore_cancel(request, reporter)
    audit.record("recovery.promote", actor=request.requester or "system", obj=request, target=str(production),
                 details={"recovered_cluster": recovered.name, "before_data": str(swap.before),
                          "timeline": request.promotion.get("timeline"), "rto_seconds": seconds})


def ignore_cancel(request: RecoveryRequest, reporter: Reporter) -> None:
    """Once production runs verified from the recovered data, a cancel would only leave the run half reported."""
    if RecoveryRequest.objects.filter(pk=request.pk, cancel_requested=True).update(cancel_requested=False) \
            or reporter.cancel.is_set():
        reporter.cancel.clear()
        reporter.log("a cancel request came after production was verified on the recovered data: the promotion "
                     "is finished instead")


