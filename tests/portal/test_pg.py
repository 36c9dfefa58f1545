"""portal/pg.py, the one runner, against real PostgreSQL programs."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from portal import embedded, pg
from tests.clusters import ScratchCluster


def test_it_returns_a_real_programs_output_and_exit_code():
    result = pg.run("psql", ["-X", "-A", "-t", "-c", "SELECT 40 + 2"], target=embedded.target(), capture_stdout=True)
    assert result.returncode == 0
    assert result.stdout.decode().strip() == "42"


def test_it_raises_the_typed_error_with_the_stderr_tail():
    with pytest.raises(pg.PgToolError) as caught:
        pg.run("psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT * FROM no_such_table"], target=embedded.target())
    error = caught.value
    assert error.program == "psql"
    assert error.returncode == 1
    assert any('relation "no_such_table" does not exist' in line for line in error.stderr_tail)
    assert "no_such_table" in str(error)


def test_it_streams_stderr_line_by_line_to_the_callback():
    lines: list[str] = []
    pg.run("psql", ["-X", "-c", "DO $$ BEGIN RAISE WARNING 'one'; RAISE WARNING 'two'; END $$"],
           target=embedded.target(), on_stderr=lines.append)
    assert [line for line in lines if "WARNING" in line] == ["WARNING:  one", "WARNING:  two"]


def test_it_says_which_binary_is_missing_for_another_major_version():
    with pytest.raises(pg.PgToolError, match="PostgreSQL 9 client programs"):
        pg.run("pg_dump", ["--version"], major=9)


def _processes_in_group(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                members.append(int(entry.name))
    return members


@pytest.fixture
def locked_restore(scratch_database: pg.Target, tmp_path: Path):
    """A dump of a table, and a session holding an exclusive lock on that table: pg_restore's parallel
    workers (forked children) block on it until they are killed."""
    with pg.connect(scratch_database) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
        conn.execute("CREATE TABLE u AS SELECT g AS id FROM generate_series(1, 1000) g")
    dump = tmp_path / "t.dump"
    pg.run("pg_dump", ["--format=custom", f"--file={dump}"], target=scratch_database)
    with pg.connect(scratch_database, autocommit=False) as locker:
        locker.execute("LOCK TABLE t, u IN ACCESS EXCLUSIVE MODE")
        yield scratch_database, dump
        locker.rollback()


def test_a_timeout_kills_the_whole_process_group(locked_restore):
    target, dump = locked_restore
    pids: list[int] = []
    started = time.monotonic()
    with pytest.raises(pg.PgToolError) as caught:
        pg.run("pg_restore", ["--data-only", "--jobs=2", f"--dbname={target.dbname}", str(dump)],
               target=target, timeout=3, on_start=pids.append)
    assert caught.value.timed_out
    assert time.monotonic() - started < 15
    assert _processes_in_group(pids[0]) == []


def test_cancel_ends_the_run(locked_restore):
    target, dump = locked_restore
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    with pytest.raises(pg.PgToolError) as caught:
        pg.run("pg_restore", ["--data-only", "--jobs=2", f"--dbname={target.dbname}", str(dump)],
               target=target, cancel=cancel)
    assert caught.value.cancelled


def test_a_secret_never_appears_in_the_childs_command_line_or_environment(scratch_cluster: ScratchCluster):
    seen: dict[str, bytes] = {}

    def inspect(pid: int) -> None:
        time.sleep(0.5)  # the child is connected and sleeping by now
        seen["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes()
        seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes()

    def on_start(pid: int) -> None:
        threading.Thread(target=inspect, args=(pid,)).start()

    marker = uuid.uuid4().hex
    result = pg.run("psql", ["-X", "-A", "-t", "-c", f"SELECT pg_sleep(1.5), '{marker}'"],
                    target=scratch_cluster.target(), capture_stdout=True, on_start=on_start)
    assert marker in result.stdout.decode()  # it really connected, with the password from the passfile
    assert scratch_cluster.password.encode() not in seen["cmdline"]
    assert scratch_cluster.password.encode() not in seen["environ"]
    assert b"PGPASSFILE=" + str(scratch_cluster.passfile).encode() in seen["environ"]


def test_connect_names_the_session_and_sets_a_statement_timeout():
    with pg.connect(embedded.target(), purpose="unit-test", statement_timeout_ms=1234) as conn:
        name = conn.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
        timeout = conn.execute("SHOW statement_timeout").fetchone()
    assert name == ("paws360-portal/unit-test",)
    assert timeout == ("1234ms",)


def test_pg_ctl_runs_the_server_as_its_owner_not_root(scratch_cluster: ScratchCluster):
    pid = int((scratch_cluster.data / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid != 0 or os.geteuid() != 0
