"""The archive and restore commands alone, run as PostgreSQL runs them: a separate program, system python3."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backups.wal import walarchive

PROGRAM = Path(walarchive.__file__)
PYTHON = "/usr/bin/python3"


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-I", "-S", str(PROGRAM), *map(str, args)], capture_output=True, text=True,
                          env=env if env is not None else {}, cwd="/", timeout=60)


def new_archive(path: Path, sysid: int) -> Path:
    path.mkdir()
    (path / walarchive.MARKER).write_text(f"{sysid}\n")
    return path


def flipped(source: Path, dest: Path, offset: int = 9000) -> Path:
    data = bytearray(source.read_bytes())
    data[offset] ^= 0xFF
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize("compress", ["", "--compress=zstd"])
def test_it_archives_a_segment_and_fetches_the_same_bytes_back(real_segments, tmp_path, compress):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    done = run("push", segment, segment.name, archive, *([compress] if compress else []))
    assert done.returncode == 0, done.stderr
    stored = sorted(p.name for p in archive.iterdir())
    assert stored == sorted([walarchive.MARKER, segment.name + (".zst" if compress else "")])
    fetched = tmp_path / "RECOVERYXLOG"
    assert run("fetch", segment.name, fetched, archive).returncode == 0
    assert fetched.read_bytes() == segment.read_bytes()


def test_auto_compresses_a_segment_a_switch_ended_early_and_keeps_a_full_one_as_it_is(real_segments, tmp_path):
    sysid, (switched, _) = real_segments
    (tmp_path / "full").mkdir()
    full = tmp_path / "full" / switched.name
    written = bytearray(switched.read_bytes())
    written[-100:] = b"\x5a" * 100  # the last page holds WAL: the segment was filled, not switched
    full.write_bytes(bytes(written))
    for label, segment, stored_as in (("switched", switched, switched.name + ".zst"), ("full", full, full.name)):
        archive = new_archive(tmp_path / f"archive-{label}", sysid)
        done = run("push", segment, segment.name, archive, "--compress=auto")
        assert done.returncode == 0, done.stderr
        assert (archive / stored_as).is_file()
        fetched = tmp_path / f"RECOVERYXLOG-{label}"
        assert run("fetch", segment.name, fetched, archive).returncode == 0
        assert fetched.read_bytes() == segment.read_bytes()
    assert (tmp_path / "archive-switched" / (switched.name + ".zst")).stat().st_size < switched.stat().st_size // 4


@pytest.mark.parametrize("compress", ["", "--compress=zstd"])
def test_the_same_segment_twice_with_the_same_bytes_is_success(real_segments, tmp_path, compress):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    assert run("push", segment, segment.name, archive, compress or "--compress=none").returncode == 0
    again = run("push", segment, segment.name, archive, compress or "--compress=none")
    assert again.returncode == 0, again.stderr
    assert len(list(archive.iterdir())) == 2


@pytest.mark.parametrize("compress", ["", "--compress=zstd"])
def test_the_same_segment_with_different_bytes_fails_and_the_archived_file_is_unchanged(
        real_segments, tmp_path, compress):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    assert run("push", segment, segment.name, archive, compress or "--compress=none").returncode == 0
    (archived,) = archive.glob(segment.name + "*")
    before = archived.read_bytes()
    (tmp_path / "other").mkdir()
    other = flipped(segment, tmp_path / "other" / segment.name)
    refused = run("push", other, segment.name, archive, compress or "--compress=none")
    assert refused.returncode == 1
    assert "different content" in refused.stderr
    assert archived.read_bytes() == before
    assert sorted(p.name for p in archive.iterdir()) == sorted([walarchive.MARKER, archived.name])


def test_a_segment_of_another_cluster_is_refused(real_segments, tmp_path):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid + 1)
    refused = run("push", segment, segment.name, archive)
    assert refused.returncode == 1
    assert f"belongs to database system {sysid}" in refused.stderr
    assert [p.name for p in archive.iterdir()] == [walarchive.MARKER]


def test_a_segment_whose_header_disagrees_with_its_name_is_refused(real_segments, tmp_path):
    sysid, (first, second) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    refused = run("push", first, second.name, archive)
    assert refused.returncode == 1
    assert "its header says" in refused.stderr


def test_the_first_segment_of_a_new_timeline_whose_header_names_the_old_one_is_archived(real_segments, tmp_path):
    """After a promotion, the new timeline's first segment starts as a copy of the old timeline's: same position,
    first page header still timeline 1. A header naming a later timeline than the file's name is refused."""
    sysid, (first, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    on_timeline_2 = "00000002" + first.name[8:]
    assert run("push", first, on_timeline_2, archive).returncode == 0
    assert walarchive.stored(archive, on_timeline_2)
    later = bytearray(first.read_bytes())
    later[4:8] = (3).to_bytes(4, "little")  # xlp_tli of the first page: timeline 3
    patched = tmp_path / "patched"
    patched.write_bytes(bytes(later))
    refused = run("push", patched, on_timeline_2.replace("00000002", "00000001", 1), archive)
    assert refused.returncode == 1 and "its header says timeline 3" in refused.stderr


def test_an_archive_folder_without_its_marker_is_refused_as_not_mounted(real_segments, tmp_path):
    _, (segment, _) = real_segments
    empty = tmp_path / "mountpoint"
    empty.mkdir()
    refused = run("push", segment, segment.name, empty)
    assert refused.returncode == 1
    assert "not mounted?" in refused.stderr
    assert list(empty.iterdir()) == []


def test_names_that_are_not_wal_files_are_refused(real_segments, tmp_path):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    assert run("push", segment, "../escape", archive).returncode == 1
    assert run("fetch", "../../etc/passwd", tmp_path / "x", archive).returncode == 255


def test_fetch_of_a_missing_segment_is_exit_1_so_recovery_ends_there(real_segments, tmp_path):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    missing = run("fetch", segment.name, tmp_path / "RECOVERYXLOG", archive)
    assert missing.returncode == 1
    assert not (tmp_path / "RECOVERYXLOG").exists()


def test_fetch_from_an_unreadable_archive_stops_recovery_with_an_exit_above_125(real_segments, tmp_path):
    _, (segment, _) = real_segments
    unmounted = tmp_path / "unmounted"
    unmounted.mkdir()
    stopped = run("fetch", segment.name, tmp_path / "RECOVERYXLOG", unmounted)
    assert stopped.returncode == 255 > 125


def test_fetch_of_a_damaged_compressed_segment_stops_recovery_and_writes_nothing(real_segments, tmp_path):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    assert run("push", segment, segment.name, archive, "--compress=zstd").returncode == 0
    stored = archive / (segment.name + ".zst")
    flipped(stored, stored, offset=stored.stat().st_size // 2)
    stopped = run("fetch", segment.name, tmp_path / "RECOVERYXLOG", archive)
    assert stopped.returncode == 255, stopped.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("RECOVERYXLOG")) == []


def test_it_needs_no_django_no_database_and_no_environment(real_segments, tmp_path):
    """The program imports the standard library only, and runs with an empty environment from /."""
    tree = ast.parse(PROGRAM.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    assert run("push", segment, segment.name, archive, "--compress=zstd", env={}).returncode == 0


def test_a_temporary_file_of_a_killed_attempt_is_replaced_not_left(real_segments, tmp_path):
    sysid, (segment, _) = real_segments
    archive = new_archive(tmp_path / "archive", sysid)
    stale = archive / f"{walarchive.TEMP_PREFIX}{segment.name}.99999"
    stale.write_bytes(b"half a segment")
    assert run("push", segment, segment.name, archive).returncode == 0
    assert sorted(p.name for p in archive.iterdir()) == sorted([walarchive.MARKER, segment.name])
    assert os.path.getsize(archive / segment.name) == segment.stat().st_size
