"""Nothing under a final name until it is whole.

A backup file is written to a temporary name beside its final one, hashed while it is written, fsynced,
checked, renamed into place, and its folder fsynced. A failure removes the temporary file; an older file
under the final name is never touched until the new one is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
TEMP_PREFIX = ".partial-"


class HashingWriter:
    """A file being written: counts bytes and computes their sha256 on the way."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.size = 0
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.file.write(data)
        self._sha.update(data)
        self.size += len(data)
        return len(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    return final.with_name(f"{TEMP_PREFIX}{final.name}")


def remove_temps(final: Path, *siblings: str) -> list[Path]:
    """The temporary files or folders of `final` and of its siblings (names in the same folder) that a dead run
    left behind: what it removed."""
    temps = [temp_name(final.with_name(name)) for name in (final.name, *siblings)]
    return [temp for temp in temps if remove_path(temp)]


def remove_path(path: Path) -> bool:
    """Remove a file, or a folder with everything below it; False if there was nothing."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    else:
        return False
    return True


@contextmanager
def atomic_file(final: Path) -> Iterator[HashingWriter]:
    """Write `final` whole or not at all. Yields a HashingWriter; its size and sha256 describe the file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(final)
    try:
        with open(temp, "wb") as raw:
            writer = HashingWriter(raw)
            yield writer
            raw.flush()
            os.fsync(raw.fileno())
        if temp.stat().st_size != writer.size:
            raise OSError(f"{temp}: {temp.stat().st_size} bytes on disk, {writer.size} written")
        os.replace(temp, final)
        fsync_dir(final.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """A folder filled by someone else (pg_dump -Fd, pg_basebackup): yields a temporary path beside `final`
    (not created: the producer creates it); when the block ends the folder is fsynced and renamed to `final`,
    which must not exist. A failure removes the temporary folder whole."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(final)
    shutil.rmtree(temp, ignore_errors=True)
    try:
        yield temp
        fsync_tree(temp)
        os.replace(temp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def tree_size(folder: Path) -> int:
    """Bytes in the files below `folder` now (a folder being written: its progress)."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def tree_digest(folder: Path, known: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """Total size, one sha256 over the sorted (name, sha256) pairs, and each file's sha256: for backups that
    are folders (pg_dump's directory format, plain base backups). `known`: sha256 already computed (while the
    files were written), by relative name."""
    files: dict[str, str] = {}
    total = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files[rel] = (known or {}).get(rel) or sha256_of(path)
        total += path.stat().st_size
    return total, combined_sha256(files), files


def combined_sha256(files: dict[str, str]) -> str:
    """A folder's one sha256 from each file's (relative name -> sha256), in path order: the same digest
    whether the files were hashed on disk or listed from object storage."""
    names = sorted(files, key=lambda name: name.split("/"))
    return hashlib.sha256("".join(f"{name}\0{files[name]}\n" for name in names).encode()).hexdigest()


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder below `folder`, deepest first, then `folder` itself."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            fsync_dir(path)
    fsync_dir(folder)
