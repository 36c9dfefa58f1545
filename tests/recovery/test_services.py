"""The application services named in deployment configuration are really stopped and started."""

from __future__ import annotations

import sys

import pytest

from recovery import services
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
