"""portal/programs.py, the one runner of every program, with real programs: its time limit ends the whole group,
a failure is one typed error, a child's environment is scrubbed and carries the job's tag."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from backups.models import Backup
from portal import embedded, orphans, pg, programs
from tests.portal.test_pg import _processes_in_group

# A program that starts another and waits: its group outlives any time limit a test gives it.
PARENT_OF_A_SLEEPER = [sys.executable, "-c",
                       "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def test_a_program_that_outlives_its_time_limit_is_ended_with_its_group_and_raises_the_typed_error():
    pids: list[int] = []
    with pytest.raises(programs.ProgramError) as caught:
        programs.run(PARENT_OF_A_SLEEPER, timeout=1, on_start=pids.append)
    assert caught.value.timed_out and caught.value.program == Path(sys.executable).name
    assert str(caught.value).startswith(f"{Path(sys.executable).name} timed out")
    assert _processes_in_group(pids[0]) == [], "the sleeper it started was ended too"


def test_a_stream_that_outlives_its_time_limit_is_ended_and_raises_the_typed_error():
    """`started()`: the caller reads a pipe that never ends; the time limit ends it, and the block's end says so."""
    with pytest.raises(programs.ProgramError) as caught, \
            programs.started(["/bin/cat"], stdin=programs.PIPE, stdout=programs.PIPE, timeout=1) as cat:
        assert cat.stdout is not None
        assert cat.stdout.read() == b""  # nothing was written to it: end of file only once it was ended
    assert caught.value.timed_out
    assert _processes_in_group(cat.pid) == []


def test_a_cancel_ends_the_program_and_says_so():
    cancel = threading.Event()
    with pytest.raises(programs.ProgramError) as caught:
        programs.run(PARENT_OF_A_SLEEPER, timeout=300, cancel=cancel, on_start=lambda pid: cancel.set())
    assert caught.value.cancelled and not caught.value.timed_out


def test_a_non_zero_exit_is_the_typed_error_with_program_exit_code_and_stderr_tail():
    script = "import sys; print('first line', file=sys.stderr); print('error: the reason', file=sys.stderr); exit(4)"
    with pytest.raises(programs.ProgramError) as caught:
        programs.run([sys.executable, "-c", script], timeout=60)
    error = caught.value
    assert (error.returncode, error.stderr_tail) == (4, ["first line", "error: the reason"])
    assert str(error) == f"{Path(sys.executable).name} exited with code 4: error: the reason"


def test_a_program_that_cannot_start_is_the_typed_error():
    with pytest.raises(programs.ProgramError, match="could not start") as caught:
        programs.run(["/nonexistent/program"], timeout=60)
    assert caught.value.returncode is None


def test_every_call_has_a_time_limit():
    with pytest.raises(ValueError, match="a time limit is needed"):
        programs.run(["/bin/true"], timeout=0)
    with pytest.raises(ValueError, match="infinite only with a cancel event"):
        programs.run(["/bin/true"], timeout=float("inf"))


def test_standard_streams_flow_through_in_chunks():
    """Several MB in through stdin and out to a sink: what arrives is what was sent."""
    data = bytes(range(256)) * 40_000
    received = bytearray()
    result = programs.run(["/bin/cat"], stdin=data, stdout_sink=received.extend, timeout=60)
    assert received == data and result.returncode == 0


def hold_portal_secrets(monkeypatch) -> dict[str, str]:
    """The portal's own environment holds libpq variables and secrets, as a deployment's may."""
    values = {"PGPASSWORD": "portal-password", "PGHOST": "portal-host.invalid", "PGSERVICEFILE": "/etc/portal.conf",
              "PGSSLKEY": "/etc/portal.key", "DATABASE_URL": "postgres://portal:pw@db/portal",
              "SECRET_KEY": "django-secret", "AWS_SECRET_ACCESS_KEY": "s3-secret", "HEALTH_TOKEN": "health-secret"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_a_child_gets_no_libpq_variable_or_secret_that_its_target_does_not_set(scratch_database, monkeypatch):
    """psql, held by a lock until its environment was read: the target's libpq variables, nothing of the portal's
    (the portal's PGPASSWORD would even fail its login)."""
    seen: dict[str, str] = {}
    job = Backup(pk=424242)
    with pg.connect(scratch_database) as conn:
        conn.execute("CREATE TABLE held (id int)")
    with pg.connect(scratch_database, autocommit=False) as locker, orphans.tagged(job):
        locker.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        with monkeypatch.context() as patched:
            portal_secrets = hold_portal_secrets(patched)
            pg.run("psql", ["-X", "-c", "SELECT count(*) FROM held"], target=scratch_database, timeout=120,
                   on_start=lambda pid: (seen.update(environ_of(pid)), locker.rollback()))
    target = scratch_database.libpq_env()
    assert {name: seen.get(name) for name in target} == target
    assert seen["PGAPPNAME"] == pg.APPLICATION_NAME
    assert (set(portal_secrets) - set(target)) & set(seen) == set(), "nothing of the portal's own environment"
    assert seen[orphans.TAG] == orphans.tag_of(job)
    assert set(seen) <= set(target) | {"PGAPPNAME", orphans.TAG} | programs.INHERITED | {
        name for name in seen if name.startswith(programs.INHERITED_PREFIX)}


def test_what_outlives_the_job_carries_no_tag_and_a_user_switch_brings_that_users_home(monkeypatch):
    monkeypatch.setenv(orphans.TAG, "test:the-job")
    with programs.started(["/bin/cat"], stdin=programs.PIPE, timeout=60, outlives_job=True) as cat:
        assert orphans.TAG not in environ_of(cat.pid)
    with programs.started(["/bin/cat"], stdin=programs.PIPE, timeout=60, run_as=embedded.cluster_os_user()) as cat:
        seen = environ_of(cat.pid)
        owner = Path(f"/proc/{cat.pid}").owner()
    assert seen[orphans.TAG] == "test:the-job"
    assert owner == embedded.cluster_os_user() == seen["USER"] == seen["LOGNAME"]
