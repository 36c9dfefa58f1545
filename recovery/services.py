"""The PAWS360 application services a complete restore stops and starts again.

Names, commands and health URLs come from deployment configuration (APP_SERVICES_FILE, a JSON list), never
from a form: `[{"name": "paws360-api", "stop": ["systemctl", "stop", "paws360-api"],
"start": ["systemctl", "start", "paws360-api"], "health_url": "http://localhost:8081/health", "timeout": 120}, ...]`,
in the order they start (they stop in reverse order). Each command runs through the runner (`portal.programs`),
with its time limit (`timeout`, seconds, COMMAND_TIMEOUT unless the entry sets one) and the runner's scrubbed
environment. A stop command carries the job's tag (the reaper ends it with its worker); a start command does not:
what it starts is the application, which must never be ended with a recovery's worker.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from portal import programs

COMMAND_TIMEOUT = 120
# The steps of a recovery that stop and start the services: the reaper's clean-up finds them by name.
STOP_STEP = "Stop the application services"
START_STEP = "Start the application services and check their health"


class ServiceError(Exception):
    pass


@dataclass(frozen=True)
class AppService:
    name: str
    stop: tuple[str, ...]
    start: tuple[str, ...]
    health_url: str = ""
    timeout: float = COMMAND_TIMEOUT


def configured() -> list[AppService]:
    path = settings.APP_SERVICES_FILE
    if not path:
        return []
    try:
        entries = json.loads(Path(path).read_text())
        return [AppService(e["name"], tuple(e["stop"]), tuple(e["start"]), e.get("health_url", ""),
                           float(e.get("timeout", COMMAND_TIMEOUT))) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImproperlyConfigured(f"APP_SERVICES_FILE {path}: {exc}") from exc


def _run(argv: tuple[str, ...], say: Callable[[str], None], *, timeout: float, starts: bool) -> None:
    """One command; its last lines of output said, a failure (exit code, time limit, not found) a ServiceError."""
    say(f"$ {' '.join(argv)}")
    output = bytearray()
    try:
        done = programs.run(list(argv), timeout=timeout, stdout_sink=output.extend, outlives_job=starts)
    except programs.ProgramError as exc:
        _say_output(output, exc.stderr_tail, say)
        raise ServiceError(f"{' '.join(argv)} {_failure(exc, timeout)}") from exc
    _say_output(output, done.stderr, say)


def _failure(exc: programs.ProgramError, timeout: float) -> str:
    if exc.timed_out:
        return f"timed out after {timeout:.0f} s (ended with everything it started)"
    if exc.returncode is None:
        return f"could not start: {'; '.join(exc.stderr_tail)}"
    return f"exited with code {exc.returncode}"


def _say_output(stdout: bytes, stderr: list[str], say: Callable[[str], None]) -> None:
    for line in (stdout.decode(errors="replace").splitlines() + stderr)[-20:]:
        say(f"  {line}")


def healthy(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (URL from deployment config)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def stop_all(services: list[AppService], say: Callable[[str], None]) -> None:
    for service in reversed(services):
        _run(service.stop, say, timeout=service.timeout, starts=False)
        say(f"{service.name} stopped")


def confirm_down(services: list[AppService], say: Callable[[str], None]) -> None:
    """A stop command that exited 0 is not proof: each health URL must no longer answer."""
    for service in services:
        if service.health_url and healthy(service.health_url, timeout=2):
            raise ServiceError(f"{service.name} still answers {service.health_url} after its stop command")
        say(f"{service.name} is down" + (f" ({service.health_url} does not answer)" if service.health_url else ""))


def restart_each(services: list[AppService], say: Callable[[str], None]) -> list[str]:
    """After a failure: start every service that is not up, one failure not keeping the others down; the errors."""
    errors = []
    for service in services:
        if service.health_url and healthy(service.health_url):
            say(f"{service.name} is up already")
            continue
        try:
            start_all([service], say)
        except ServiceError as exc:
            errors.append(str(exc))
            say(f"FAILED: {exc}")
    return errors


def start_all(services: list[AppService], say: Callable[[str], None], health_timeout: float = 60) -> None:
    """Start in order; each must answer its health URL before the next one starts."""
    for service in services:
        _run(service.start, say, timeout=service.timeout, starts=True)
        if service.health_url:
            wait_healthy(service, health_timeout)
        say(f"{service.name} started and healthy")


def wait_healthy(service: AppService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(service.health_url):
            return
        time.sleep(0.5)
    raise ServiceError(f"{service.name} did not answer {service.health_url} within {timeout:.0f} s")
