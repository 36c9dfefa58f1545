"""The application services named in deployment configuration are really stopped and started."""

from __future__ import annotations

import json
import sys

import pytest

from portal import orphans
from portal.jobs import alive
from recovery import services
from recovery.models import RecoveryRequest
from tests.clusters import free_port


def test_it_stops_and_starts_the_configured_services(api):
    lines: list[str] = []
    assert services.healthy(api.health_url)
    services.stop_all([api], lines.append)
    assert not services.healthy(api.health_url)
    services.start_all([api], lines.append)
    assert services.healthy(api.health_url)
    assert "paws360-api started and healthy" in lines


def test_a_failing_command_is_a_clear_error(api, tmp_path):
    broken = services.AppService("paws360-web", stop=(sys.executable, "-c", "raise SystemExit(3)"), start=())
    with pytest.raises(services.ServiceError, match="exited with code 3"):
        services.stop_all([broken], say=lambda line: None)


def test_a_service_that_never_gets_healthy_fails_the_start(api):
    silent = services.AppService("paws360-worker", stop=(), start=(sys.executable, "-c", "pass"),
                                 health_url=f"http://127.0.0.1:{free_port()}/health")
    with pytest.raises(services.ServiceError, match="did not answer"):
        services.start_all([silent], say=lambda line: None, health_timeout=1)


def test_a_command_that_outlives_its_time_limit_is_ended_with_what_it_started(tmp_path, settings):
    """The limit comes from the services file; the command and the process it started are both ended."""
    pids = tmp_path / "pids"
    hangs = [sys.executable, "-c", "import os, subprocess, sys, time; sleeper = subprocess.Popen(['sleep', '300']); "
             "open(sys.argv[1], 'w').write(f'{os.getpid()} {sleeper.pid}'); time.sleep(300)", str(pids)]
    config = tmp_path / "services.json"
    config.write_text(json.dumps([{"name": "paws360-api", "stop": hangs, "start": ["true"], "timeout": 1}]))
    settings.APP_SERVICES_FILE = str(config)
    (service,) = services.configured()
    lines: list[str] = []
    with pytest.raises(services.ServiceError, match=r"timed out after 1 s"):
        services.stop_all([service], lines.append)
    assert lines[0].startswith("$ ") and all(not alive(int(pid)) for pid in pids.read_text().split())


def test_a_stop_command_carries_the_job_tag_and_a_start_command_does_not():
    """What a start command starts is the application: the reaper must never end it with a recovery's worker."""
    says_tag = (sys.executable, "-c", f"import os; print(os.environ.get('{orphans.TAG}', 'untagged'))")
    service = services.AppService("paws360-api", stop=says_tag, start=says_tag)
    job = RecoveryRequest(pk=4242)
    stopped: list[str] = []
    started: list[str] = []
    with orphans.tagged(job):
        services.stop_all([service], stopped.append)
        services.start_all([service], started.append)
    assert f"  {orphans.tag_of(job)}" in stopped
    assert "  untagged" in started
