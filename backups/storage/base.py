"""The storage interface every location's bytes go through: `Storage` (put, fetch, stat, check, delete, keys of a
file or a folder under a key), what it answers (`Stat`) and raises (`StorageError`), and small shared helpers."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backups import files
from backups.models import StorageLocation

Progress = Callable[[int], None]  # called with the number of bytes just transferred
MB = 1024 * 1024


@dataclass(frozen=True)
class Stat:
    size: int
    sha256: str


class StorageError(Exception):
    """A storage operation failed; the message says where and why (never with a credential)."""


def safe_key(key: str) -> str:
    """A relative key without `..`: a key never reaches outside its location."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise StorageError(f"refusing key {key!r}: keys are relative paths without '..'")
    return path.as_posix()


def source_stat(source: Path) -> Stat:
    """Size and sha256 of a local file or folder, read from disk."""
    if source.is_dir():
        size, digest, _ = files.tree_digest(source)
        return Stat(size, digest)
    return Stat(source.stat().st_size, files.sha256_of(source))


def tree_stat(stats: dict[str, Stat]) -> Stat:
    """A folder's size and sha256 from its files' (relative name -> Stat)."""
    return Stat(sum(s.size for s in stats.values()), files.combined_sha256({r: s.sha256 for r, s in stats.items()}))


def checksum_mismatch(where: str, expected: str, found: str) -> StorageError:
    return StorageError(f"{where}: checksum mismatch: expected sha256 {expected[:16]}…, found {found[:16]}…")


class Storage(ABC):
    def __init__(self, location: StorageLocation) -> None:
        self.location = location

    @abstractmethod
    def where(self, key: str) -> str:
        """A human-readable address of `key`: a path or an s3:// URL (no credential)."""

    @abstractmethod
    def put(self, source: Path, key: str, *, sha256: str, progress: Progress | None = None) -> None:
        """Store the file or folder `source` under `key`; refuse if its bytes do not hash to `sha256`."""

    @abstractmethod
    def fetch(self, key: str, dest: Path, *, progress: Progress | None = None) -> Stat:
        """Bring `key` back to the local path `dest` (a file or a folder, whole or not at all)."""

    @abstractmethod
    def stat(self, key: str) -> Stat | None:
        """Size and sha256 as recorded (S3: object metadata; local: the bytes); None if absent."""

    @abstractmethod
    def check(self, key: str) -> Stat | None:
        """Size and sha256 of the bytes as stored, read back in full; None if absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` (a file or a folder); absent is fine."""

    @abstractmethod
    def keys(self, suffix: str) -> Iterator[str]:
        """Every file's key that ends with `suffix`, leaving out hidden names (temporary files, the marker)."""


def visible(key: str) -> bool:
    return not any(part.startswith(".") for part in PurePosixPath(key).parts)


class ByteCounter:
    """A thread-safe running total for progress callbacks (S3 transfers call back from several threads)."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.done = 0
        self._lock = threading.Lock()
        self._report = report

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            self._report(self.done)
