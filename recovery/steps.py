"""A recovery's steps: each recorded with start, end, outcome and log as it runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from portal.jobs import Reporter
from recovery.models import RecoveryRequest, RecoveryStep


class Steps:
    """Declare the plan up front (so the step list shows what is coming), then run each step in turn."""

    def __init__(self, request: RecoveryRequest, reporter: Reporter, names: list[str]) -> None:
        self.request = request
        self.reporter = reporter
        request.steps.all().delete()
        self.steps = RecoveryStep.objects.bulk_create(
            RecoveryStep(request=request, position=i, name=name) for i, name in enumerate(names, start=1)
        )
        self.reporter.progress(done=0, total=len(names))

    def _get(self, name: str) -> RecoveryStep:
        return next(step for step in self.steps if step.name == name)

    def logger(self, name: str) -> Callable[[str], None]:
        """A function that logs lines into the step called `name`."""
        step = self._get(name)
        return lambda line: self.log(step, line)

    def log(self, step: RecoveryStep, line: str) -> None:
        self.reporter.log(f"[{step.position}] {line}")
        RecoveryStep.objects.filter(pk=step.pk).update(log=Concat(F("log"), Value(line + "\n")))

    @contextmanager
    def run(self, name: str) -> Iterator[RecoveryStep]:
        step = self._get(name)
        step.status, step.started = RecoveryStep.Status.RUNNING, timezone.now()
        RecoveryStep.objects.filter(pk=step.pk).update(status=step.status, started=step.started)
        self.reporter.progress(note=name)
        try:
            yield step
        except BaseException as exc:
            RecoveryStep.objects.filter(pk=step.pk).update(
                status=RecoveryStep.Status.FAILED, finished=timezone.now(), error=str(exc)[:5000])
            raise
        RecoveryStep.objects.filter(pk=step.pk).update(status=RecoveryStep.Status.SUCCEEDED, finished=timezone.now())
        done = sum(1 for s in self.steps if s.position <= step.position)
        # A step may have shown its own progress (bytes, WAL) meanwhile: back to counting steps.
        self.reporter.progress(done=done, total=len(self.steps), note=name)

    def skip_rest(self) -> None:
        RecoveryStep.objects.filter(request=self.request, status=RecoveryStep.Status.PENDING).update(
            status=RecoveryStep.Status.SKIPPED)
