"""The skeleton every recovery that may take the application down follows, whatever it restores: its steps declared
up front (`recovery.steps.Steps`), the application services stopped and seen down, the work, and on any failure its
own undo then the services started again (the failure's message says what else went wrong); on success the services
started and each seen healthy, and the RTO measured from the first step. Complete restores and promotions use it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from recovery import cleanup, objectives, services
from recovery.models import RecoveryRequest
from recovery.steps import Steps


def stop_services(steps: Steps, app: list[services.AppService]) -> None:
    """The services stopped, each seen no longer answering its health URL: a step of its own."""
    with steps.run(services.STOP_STEP):
        say = steps.logger(services.STOP_STEP)
        services.stop_all(app, say)
        services.confirm_down(app, say)


@contextlib.contextmanager
def undone_on_failure(request: RecoveryRequest, steps: Steps, app: list[services.AppService],
                      undo: Callable[[], list[str]], error: type[Exception]) -> Iterator[None]:
    """Run the work; if it fails, the steps not run are skipped, `undo` puts back what it changed, and the services
    it stopped are started again. The original failure is raised, with what else went wrong appended."""
    try:
        yield
    except BaseException as exc:
        steps.skip_rest()
        problems = undo() + restart_after_failure(request, steps, app)
        if problems:
            raise error(f"{exc or type(exc).__name__}; and then: {'; '.join(problems)}") from exc
        raise


def restart_after_failure(request: RecoveryRequest, steps: Steps, app: list[services.AppService]) -> list[str]:
    """The services a failed run stopped, started again (each one, whatever the others do); what went wrong."""
    if not app or not cleanup.services_left_stopped(request):
        return []
    with contextlib.suppress(services.ServiceError), steps.run(services.START_STEP):
        errors = services.restart_each(app, steps.logger(services.START_STEP))
        if errors:
            raise services.ServiceError("; ".join(errors))
    return errors


def finish(request: RecoveryRequest, steps: Steps, app: list[services.AppService], until: str) -> float:
    """The services started in order, each healthy; the RTO recorded from the first step to that moment (to `until`
    when there are no services). Returns the RTO in seconds."""
    if app:
        with steps.run(services.START_STEP):
            services.start_all(app, steps.logger(services.START_STEP))
        until = "the services healthy"
    first = steps.first_started()
    assert first is not None and first.started is not None
    seconds = objectives.record_rto(request, first.started, until)
    steps.reporter.log(f"RTO {seconds:.1f} s, from the first step to {until}")
    return seconds
