"""A recovery's steps: each recorded with start, end, outcome and log as it runs.

The progress bar counts PER_STEP units per step: a long step (a restore) moves the bar within its share with
`fraction()`; a finished step fills its share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from portal.jobs import Reporter
from recovery.models import RecoveryRequest, RecoveryStep

PER_STEP = 100


class Steps:
    """Declare the plan up front (so the step list shows what is coming), then run each step in turn."""

    def __init__(self, request: RecoveryRequest, reporter: Reporter, names: list[str]) -> None:
        self.request = request
        self.reporter = reporter
        request.steps.all().delete()
        self.steps = RecoveryStep.objects.bulk_create(
            RecoveryStep(request=request, position=i, name=name) for i, name in enumerate(names, start=1)
        )
        self.reporter.progress(done=0, total=len(names) * PER_STEP)

    def _get(self, name: str) -> RecoveryStep:
        return next(step for step in self.steps if step.name == name)

    def logger(self, name: str) -> Callable[[str], None]:
        """A function that logs lines into the step called `name`."""
        step = self._get(name)
        return lambda line: self.log(step, line)

    def log(self, step: RecoveryStep, line: str) -> None:
        self.reporter.log(f"[{step.position}] {line}")
        RecoveryStep.objects.filter(pk=step.pk).update(log=Concat(F("log"), Value(line + "\n")))

    def fraction(self, step: RecoveryStep, value: float) -> None:
        """How far the running step is, from 0 to 1."""
        self.reporter.progress(done=round((step.position - 1 + max(0.0, min(1.0, value))) * PER_STEP))

    def progress_within(self, name: str) -> Callable[[int, int, str], None]:
        """A `(done, total, note)` callback that moves the bar within the share of the step called `name`."""
        step = self._get(name)

        def report(done: int, total: int, note: str) -> None:
            self.reporter.progress(note=note)
            if total:
                self.fraction(step, min(done / total, 0.99))
        return report

    @contextmanager
    def run(self, name: str) -> Iterator[RecoveryStep]:
        step = self._get(name)
        step.status, step.started = RecoveryStep.Status.RUNNING, timezone.now()
        RecoveryStep.objects.filter(pk=step.pk).update(status=step.status, started=step.started)
        self.reporter.progress(note=name)
        try:
            yield step
        except BaseException as exc:
            step.status, step.finished = RecoveryStep.Status.FAILED, timezone.now()
            RecoveryStep.objects.filter(pk=step.pk).update(
                status=step.status, finished=step.finished, error=(str(exc) or type(exc).__name__)[:5000])
            raise
        step.status, step.finished = RecoveryStep.Status.SUCCEEDED, timezone.now()
        RecoveryStep.objects.filter(pk=step.pk).update(status=step.status, finished=step.finished)
        self.reporter.progress(done=step.position * PER_STEP)

    def skip_rest(self) -> None:
        RecoveryStep.objects.filter(request=self.request, status=RecoveryStep.Status.PENDING).update(
            status=RecoveryStep.Status.SKIPPED)

    def first_started(self) -> RecoveryStep | None:
        return next((step for step in self.steps if step.started), None)
