"""The portal's own database stopped under a running gunicorn: /health answers JSON 503, never HTML, and a page
answers the styled 500 page with the request id the log file has with the traceback.

The portal runs in a subprocess whose DATABASE_URL is a scratch cluster holding a copy of the test database (its
schema and rows, whatever the migrations made of them); stopping that cluster leaves the test session's own
database alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from portal import pg
from tests.clusters import ScratchCluster, free_port
from tests.conftest import PROJECT, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
TOKEN = "t" * 48
SESSION = {"Cookie": "sessionid=" + "a" * 32}  # any session cookie makes the request read the session table


def copy_test_database(into: ScratchCluster) -> None:
    db = connection.settings_dict
    test_db = pg.Target(db["HOST"], int(db["PORT"]), db["USER"], db["NAME"], passfile=settings.PGPASSFILE, major=15)
    dump = pg.run("pg_dump", ["--no-owner", "--no-privileges", f"--dbname={test_db.dbname}"], target=test_db,
                  capture_stdout=True, timeout=120)
    pg.run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname=postgres"], target=into.target(),
           stdin=dump.stdout, timeout=120)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (http://127.0.0.1 only)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@pytest.fixture
def portal_on_scratch(django_db_setup, django_db_blocker, scratch_cluster, tmp_path) -> Iterator[tuple[str, Path]]:
    """gunicorn serving the portal from a scratch cluster's copy of the test database: (its URL, its log file)."""
    with django_db_blocker.unblock():
        copy_test_database(scratch_cluster)
    log_file = tmp_path / "log" / "portal.log"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"postgres://{scratch_cluster.role}@127.0.0.1:{scratch_cluster.port}/postgres",
           "PGPASSFILE": str(scratch_cluster.passfile), "PORTAL_LOG_FILE": str(log_file), "HEALTH_TOKEN": TOKEN,
           "CONN_MAX_AGE": "0"}
    output = open(tmp_path / "gunicorn.out", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
                               "--workers", "1", "--timeout", "60"], cwd=PROJECT, env=env, stdout=output,
                              stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=60, message="gunicorn to answer")
        yield url, log_file
    finally:
        server.terminate()
        server.wait(timeout=30)
        output.close()


def _answers(url: str) -> bool:
    try:
        get(f"{url}/health")
    except OSError:
        return False
    return True


def test_health_is_json_503_and_a_page_the_styled_500_page(portal_on_scratch, scratch_cluster):
    url, log_file = portal_on_scratch
    status, _, body = get(f"{url}/health", {"Authorization": f"Bearer {TOKEN}"})
    details = json.loads(body)
    assert status == 503 and details["portal_database"]["ok"] is True  # no worker: failing all the same
    assert details["clusters"] == {} and details["backups"] == {}  # the copy has the tables, and no rows

    scratch_cluster.stop()

    for headers in [{}, SESSION, {"Authorization": "Bearer wrong"}]:
        status, response_headers, body = get(f"{url}/health", headers)
        assert (status, response_headers["Content-Type"], body) == (503, "application/json", '{"status": "fail"}')
    status, _, body = get(f"{url}/health", {"Authorization": f"Bearer {TOKEN}", **SESSION})
    details = json.loads(body)
    assert status == 503 and details["status"] == "fail" and details["portal_database"]["ok"] is False

    status, response_headers, page = get(f"{url}/admin/", SESSION)
    request_id = response_headers["X-Request-ID"]
    assert status == 500 and response_headers["Content-Type"].startswith("text/html")
    assert "PAWS360 DB Ops Portal" in page and "Server error" in page
    assert f'<code id="request-id">{request_id}</code>' in page
    logged = log_file.read_text()
    record = logged[logged.index(f"ERROR [{request_id}]"):]
    assert record.startswith(f"ERROR [{request_id}] ") and "Internal Server Error: /admin/" in record
    assert "Traceback" in record and "OperationalError" in record
    assert TOKEN not in logged
