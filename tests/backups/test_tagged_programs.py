"""Each kind of program the worker starts runs through the runner and carries the job's tag while it runs: the
reaper (`orphans.carrying`, which reads every process's environment in /proc) finds age, GNU tar and zstd. Each one
is held mid-run by its input (a named pipe the test writes when it has looked), never by a pause."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from backups import crypto
from backups.kinds import base_extract
from backups.models import Backup
from backups.wal import catalog, walarchive
from portal import orphans
from tests.backups.test_age_killed import programs_of
from tests.conftest import wait_for

JOB = Backup(pk=31337)


def tagged_programs(name: str) -> list[int]:
    """The running processes that carry JOB's tag and run `name`."""
    return programs_of(JOB, name)


@contextmanager
def running_in_thread(work: Callable[[], object]) -> Iterator[dict[str, object]]:
    """`work()` on a thread of its own while the block runs; its result (or error) once the block ended."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    try:
        yield outcome
    finally:
        thread.join(timeout=60)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_age_carries_the_job_tag(age_keys):
    stored = io.BytesIO()
    with orphans.tagged(JOB), crypto.encrypting_writer(stored) as writer:
        assert tagged_programs("age") == [writer.age.pid]
        writer.write(b"student record\n")
    assert stored.getvalue().startswith(b"age-encryption.org/v1")
    assert tagged_programs("age") == []


def test_tar_carries_the_job_tag_while_it_extracts(tmp_path: Path):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("PG_VERSION"), io.BytesIO(b""))
    source, destination = fifo(tmp_path / "base.tar"), tmp_path / "data"
    destination.mkdir()
    expected = hashlib.sha256(data.getvalue()).hexdigest()
    with orphans.tagged(JOB), running_in_thread(
            lambda: base_extract.extract_file(source, destination, expected, os_user=None)):
        (pid,) = wait_for(lambda: tagged_programs("tar"), message="tar, waiting for the backup's bytes")
        source.write_bytes(data.getvalue())  # the extraction goes on, and ends
    assert (destination / "PG_VERSION").is_file() and not Path(f"/proc/{pid}").exists()


def test_zstd_carries_the_job_tag_while_it_checks_an_archived_segment(tmp_path: Path):
    compressed = subprocess.run([walarchive.zstd_program(), "-q", "-c"], input=b"\0" * 8192, capture_output=True,
                                check=True).stdout
    stored = fifo(tmp_path / ("000000010000000000000001" + walarchive.ZSTD_SUFFIX))
    with orphans.tagged(JOB), running_in_thread(lambda: catalog.check_stored(stored)) as outcome:
        wait_for(lambda: tagged_programs("zstd"), message="zstd, waiting for the archived segment")
        stored.write_bytes(compressed)
    assert outcome["result"] == "", "the segment reads back whole"


def test_a_damaged_segment_is_named_by_the_check(tmp_path: Path):
    stored = tmp_path / ("000000010000000000000001" + walarchive.ZSTD_SUFFIX)
    stored.write_bytes(b"not a zstd frame")
    assert catalog.check_stored(stored).startswith(f"{stored}: cannot be decompressed (damaged?): zstd exited")
