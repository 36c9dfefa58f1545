"""`bin/portal up` as root, on ports and in a folder of its own: what runs, as whom, and that a later command finds
the same instance through the settings `up` kept. Then `bin/portal down` stops all of it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters import free_port

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port_run(length: int = 3) -> int:
    """A port whose next ones are free too (the portal's cluster, the managed one and the scratch one)."""
    for _ in range(50):
        base = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(base + 1, base + length):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {length} consecutive free ports")


@pytest.fixture
def instance() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test runs `bin/portal up` as root; CI runs as root")
        pytest.skip("`bin/portal up` as root needs root")
    folder = Path(tempfile.mkdtemp(prefix="paws360-up-"))
    folder.chmod(0o755)  # the clusters' and the web server's users reach their folders through it
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DJANGO_", "PG", "TEST_DATABASE"))
            and k not in ("DATABASE_URL", "BACKUP_ROOT", "EMBEDDED_PASSFILE")}
    env = {**keep, "PORTAL_ENV_FILE": str(folder / "portal.env"), "PORTAL_VAR": str(folder / "var"),
           "PORTAL_PG_PORT": str(free_port_run()), "PORTAL_HTTP_PORT": str(free_port()), "SAMPLE_SCALE": "0.02"}
    try:
        yield env
    finally:
        later = {**keep, "PORTAL_ENV_FILE": env["PORTAL_ENV_FILE"]}
        subprocess.run([str(PROJECT / "bin/portal"), "down"], env=later, capture_output=True, timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


def users_of(pid: int) -> set[str]:
    """The users of a process and of its children (gunicorn's workers, the worker's processes)."""
    out = subprocess.run(["ps", "-o", "user=", "--pid", str(pid), "--ppid", str(pid)], capture_output=True, text=True)
    return set(out.stdout.split())


def portal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROJECT / "bin/portal"), *args], env=env, capture_output=True, text=True, timeout=600)


def test_portal_up_as_root_runs_nothing_as_root_and_down_stops_it_all(instance):
    up = portal(instance, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    var = Path(instance["PORTAL_VAR"])
    web, worker = (int((var / "run" / name).read_text()) for name in ("gunicorn.pid", "qcluster.pid"))
    assert users_of(web) == {"paws360-web"}
    assert users_of(worker) == {"postgres"}
    postmasters = [int((var / "pg" / name / "data" / "postmaster.pid").read_text().split()[0])
                   for name in ("portal", "managed", "scratch")]
    assert all(users_of(pid) == {"postgres"} for pid in postmasters)
    base = int(instance["PORTAL_PG_PORT"])
    assert f"scratch cluster 'embedded-scratch' (127.0.0.1:{base + 2}): reachable" in up.stdout, \
        "registered as the scratch cluster, and the worker's passfile reaches it"

    page = urllib.request.urlopen(f"http://127.0.0.1:{instance['PORTAL_HTTP_PORT']}/admin/login/", timeout=30)
    assert page.status == 200

    backups = (var / "backups").stat()
    assert stat.S_IMODE(backups.st_mode) & 0o007 == 0, "backups: nobody but the worker and the web server's group"
    kept = Path(instance["PORTAL_ENV_FILE"])
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert f"PORTAL_PG_PORT={instance['PORTAL_PG_PORT']}" in kept.read_text()

    # A later command given nothing but where the settings are talks to the same instance.
    later = {k: v for k, v in instance.items() if k not in ("PORTAL_PG_PORT", "PORTAL_HTTP_PORT", "PORTAL_VAR")}
    status = portal(later, "status")
    assert f"portal: running on 127.0.0.1:{base}" in status.stdout
    assert f"managed: running on 127.0.0.1:{base + 1}" in status.stdout
    assert f"scratch: running on 127.0.0.1:{base + 2}" in status.stdout
    assert f"web server on http://127.0.0.1:{instance['PORTAL_HTTP_PORT']}/" in status.stdout

    down = portal(later, "down")
    assert down.returncode == 0, down.stderr[-3000:]
    for pid in (web, worker, *postmasters):
        assert not Path(f"/proc/{pid}").exists(), f"{pid} still runs after down"
