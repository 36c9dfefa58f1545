"""Recovery tests: a real sample database, a real verified backup of it (the backup pipeline's own), the stand-in
API named in APP_SERVICES_FILE, and the recovery run the way the worker runs it."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from backups.models import Backup
from portal import pg
from portal.jobs import run_job
from portal.models import ManagedDatabase
from recovery import approvals, services
from recovery.models import RecoveryRequest
from recovery.perform import perform
from tests.backups.conftest import logical_policy, run_now  # noqa: F401 (fixtures)
from tests.clusters import free_port
from tests.recovery.pitr_fixtures import archiving, base_policy, marked_target, recovery_root  # noqa: F401

STANDIN = str(Path(__file__).with_name("standin_api.py"))


@pytest.fixture
def good_backup(logical_policy) -> Backup:  # noqa: F811
    """A verified full logical backup of the sample database, taken by the backup pipeline."""
    backup = run_now(logical_policy)
    assert (backup.status, backup.verification) == ("succeeded", "verified"), backup.error
    return backup


@pytest.fixture
def api(tmp_path, settings, monkeypatch) -> Iterator[services.AppService]:
    """The stand-in API, running, and named in APP_SERVICES_FILE (here and in any worker started later). Its start
    command waits while the file `Path(api.start[-1])` exists: a test holds a recovery at its services' restart."""
    port, pidfile, gate = free_port(), tmp_path / "api.pid", tmp_path / "api-start.gate"
    entry = {"name": "paws360-api", "start": [sys.executable, STANDIN, "start", str(port), str(pidfile), str(gate)],
             "stop": [sys.executable, STANDIN, "stop", str(pidfile)], "health_url": f"http://127.0.0.1:{port}/health"}
    config = tmp_path / "services.json"
    config.write_text(json.dumps([entry]))
    settings.APP_SERVICES_FILE = str(config)
    monkeypatch.setenv("APP_SERVICES_FILE", str(config))
    service = services.configured()[0]
    services.start_all([service], say=lambda line: None)
    yield service
    if pidfile.exists():
        services.stop_all([service], say=lambda line: None)


class HealthWatch:
    """Polls a health URL on a thread of its own while a recovery runs: what the service said, in order."""

    def __init__(self, url: str) -> None:
        self.url, self.seen = url, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            state = "up" if services.healthy(self.url, timeout=1) else "down"
            if not self.seen or self.seen[-1] != state:
                self.seen.append(state)
            time.sleep(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def submit(database: ManagedDatabase, requester, approver=None, **fields) -> RecoveryRequest:
    """Submit a recovery request as the form does; approve it when it needs approval and an approver is given."""
    defaults = {"kind": RecoveryRequest.Kind.COMPLETE, "cluster": database.cluster, "database": database,
                "reason": "INC-2207 grades corrupted by a bad migration"}
    request = approvals.submit(RecoveryRequest(**(defaults | fields)), requester)
    if request.needs_approval and approver is not None:
        approvals.approve(request, approver)
    return request


def run(request: RecoveryRequest) -> RecoveryRequest:
    """Run the request here, as the worker would."""
    run_job(RecoveryRequest, request.pk, perform)
    request.refresh_from_db()
    return request


def in_thread(func, *args) -> threading.Thread:
    def target() -> None:
        try:
            func(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def query(database: ManagedDatabase | pg.Target, statement: str, params: list | None = None) -> list[tuple]:
    target = database.target() if isinstance(database, ManagedDatabase) else database
    with pg.connect(target) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def database_names(database: ManagedDatabase) -> set[str]:
    rows = query(database.cluster.target(), "SELECT datname FROM pg_database WHERE datname LIKE %s",
                 [f"{database.name}%"])
    return {name for (name,) in rows}
