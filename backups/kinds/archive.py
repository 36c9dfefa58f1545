"""Tar archives of files, with a checksum manifest: what configuration and application-data backups store.

Written as a stream (through age when encrypted) to a temporary file renamed when whole; every file is hashed
while it is read into the archive, the manifest goes in as `MANIFEST.sha256` (so `sha256sum -c` checks an
extracted copy) and into the catalogue. Checking an archive reads every member back and compares.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from backups import crypto
from backups.kinds.logical import Written, stored_stream

MANIFEST_NAME = "MANIFEST.sha256"
CHUNK = 1024 * 1024


class ArchiveMismatch(Exception):
    pass


@dataclass
class Member:
    """One file for the archive: from disk (`path`) or from memory (`data`)."""

    arcname: str
    path: Path | None = None
    data: bytes | None = None


class HashingReader:
    def __init__(self, file: IO[bytes], on_read: Callable[[int], None] | None = None) -> None:
        self.file, self.on_read = file, on_read
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.file.read(n)
        self.sha.update(data)
        self.size += len(data)
        if self.on_read:
            self.on_read(len(data))
        return data


@dataclass
class ArchiveResult:
    written: Written
    files: dict[str, dict[str, object]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _add(tar: tarfile.TarFile, member: Member, on_read: Callable[[int], None] | None) -> dict[str, object] | None:
    if member.data is not None:
        info = tarfile.TarInfo(member.arcname)
        info.size, info.mtime, info.mode = len(member.data), int(time.time()), 0o600
        reader = HashingReader(io.BytesIO(member.data))
        tar.addfile(info, reader)
        return {"sha256": reader.sha.hexdigest(), "size": reader.size}
    assert member.path is not None
    info = tar.gettarinfo(str(member.path), arcname=member.arcname)
    if info.isreg():
        with open(member.path, "rb") as file:
            reader = HashingReader(file, on_read)
            tar.addfile(info, reader)
        return {"sha256": reader.sha.hexdigest(), "size": reader.size}
    if info.isdir() or info.issym():
        tar.addfile(info)
        return None
    raise ValueError("not a regular file, folder or symbolic link")


def write_archive(final: Path, members: Iterable[Member], *, encrypt: bool,
                  on_read: Callable[[int], None] | None = None) -> ArchiveResult:
    """Store `members` as a tar at `final` (encrypted with age when `encrypt`), whole or not at all."""
    result = ArchiveResult(Written(0, ""))
    with (stored_stream(final, encrypt=encrypt) as (write, out),
          tarfile.open(fileobj=_WriteOnly(write), mode="w|", format=tarfile.PAX_FORMAT) as tar):
        for member in members:
            try:
                entry = _add(tar, member, on_read)
            except (ValueError, FileNotFoundError) as exc:  # a special file, or one removed meanwhile
                result.skipped.append(f"{member.arcname}: {exc}")
                continue
            if entry is not None:
                result.files[member.arcname] = entry
        manifest = "".join(f"{e['sha256']}  {name}\n" for name, e in result.files.items()).encode()
        _add(tar, Member(MANIFEST_NAME, data=manifest), None)
    result.written = Written(out.size, out.sha256)
    return result


class _WriteOnly:
    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write


@contextmanager
def opened(path: Path, *, encrypted: bool) -> Iterator[IO[bytes]]:
    if not encrypted:
        with open(path, "rb") as file:
            yield file
        return
    with crypto.decrypting_reader(path) as clear:
        yield clear
        while clear.read(CHUNK):  # tar's trailing padding: let age finish
            pass


def check_archive(path: Path, expected: dict[str, dict[str, object]], *, encrypted: bool) -> int:
    """Read every member back and compare it with the manifest; returns the files checked."""
    seen: dict[str, str] = {}
    with opened(path, encrypted=encrypted) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if not info.isreg() or info.name == MANIFEST_NAME:
                continue
            source = tar.extractfile(info)
            assert source is not None
            reader = HashingReader(source)
            while reader.read(CHUNK):
                pass
            seen[info.name] = reader.sha.hexdigest()
    problems = [f"{name}: missing" for name in expected if name not in seen]
    problems += [f"{name}: not in the manifest" for name in seen if name not in expected]
    problems += [f"{name}: sha256 differs" for name, sha in seen.items()
                 if name in expected and expected[name]["sha256"] != sha]
    if problems:
        raise ArchiveMismatch("; ".join(problems[:20]))
    return len(seen)
