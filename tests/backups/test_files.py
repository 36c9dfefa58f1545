"""Atomic backup files, against a real (small, full) file system."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from backups import files


def test_it_writes_the_whole_file_and_reports_size_and_sha256(tmp_path: Path):
    final = tmp_path / "sub" / "a.dump"
    with files.atomic_file(final) as out:
        out.write(b"hello ")
        out.write(b"world")
    assert final.read_bytes() == b"hello world"
    assert (out.size, out.sha256) == (11, hashlib.sha256(b"hello world").hexdigest())
    assert files.sha256_of(final) == out.sha256
    assert list(final.parent.iterdir()) == [final]


def test_a_failure_leaves_the_older_file_and_no_temporary(tmp_path: Path):
    final = tmp_path / "a.dump"
    final.write_bytes(b"older, good")
    with pytest.raises(RuntimeError), files.atomic_file(final) as out:
        out.write(b"half")
        raise RuntimeError("pg_dump died")
    assert final.read_bytes() == b"older, good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dump"]


@pytest.fixture
def tiny_fs(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_fails_with_nothing_under_the_final_name(tiny_fs: Path):
    (tiny_fs / "old.dump").write_bytes(b"x" * 1000)
    final = tiny_fs / "new.dump"
    with pytest.raises(OSError), files.atomic_file(final) as out:
        for _ in range(4):
            out.write(os.urandom(512 * 1024))
    assert not final.exists()
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["old.dump"]


def test_tree_digest_changes_when_one_byte_does(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "toc.dat").write_bytes(b"abc")
    (tmp_path / "d" / "1.dat.gz").write_bytes(b"def")
    size, digest, per_file = files.tree_digest(tmp_path / "d")
    assert size == 6 and set(per_file) == {"toc.dat", "1.dat.gz"}
    (tmp_path / "d" / "1.dat.gz").write_bytes(b"deF")
    assert files.tree_digest(tmp_path / "d")[1] != digest
