"""Local folders as storage: files and folders copied under a temporary name, fsynced and renamed; every access
checked first (`locations.check_ready`: the folder is the location's, and its disk mounted)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from backups import files
from backups.models import StorageLocation
from backups.storage import locations
from backups.storage.base import (
    Progress,
    Stat,
    Storage,
    StorageError,
    checksum_mismatch,
    safe_key,
    source_stat,
    tree_stat,
)


class LocalStorage(Storage):
    """Every operation first checks the folder (`locations.check_ready`): allowed, and carrying this
    location's marker. A disk that is not mounted is refused, never written to (or read as empty) in its stead."""

    def __init__(self, location: StorageLocation) -> None:
        super().__init__(location)
        self.root = Path(location.root)

    def path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def ready(self) -> None:
        try:
            locations.check_ready(self.location)
        except locations.LocationError as exc:
            raise StorageError(str(exc)) from exc

    def checked_path(self, key: str) -> Path:
        self.ready()
        return self.path(key)

    def where(self, key: str) -> str:
        return str(self.path(key))

    def put(self, source: Path, key: str, *, sha256: str, progress: Progress | None = None) -> None:
        final = self.checked_path(key)
        copy = copy_tree if source.is_dir() else copy_file
        try:
            copy(source, final, sha256, progress)
        except OSError as exc:
            raise StorageError(f"{final}: {exc.strerror or exc}") from exc

    def fetch(self, key: str, dest: Path, *, progress: Progress | None = None) -> Stat:
        source = self.checked_path(key)
        if not source.exists():
            raise StorageError(f"{source}: not found")
        try:
            copy = copy_tree if source.is_dir() else copy_file
            return copy(source, dest, None, progress)
        except OSError as exc:
            raise StorageError(f"{dest}: {exc.strerror or exc}") from exc

    def stat(self, key: str) -> Stat | None:
        return self.check(key)

    def check(self, key: str) -> Stat | None:
        path = self.checked_path(key)
        if not path.exists():
            return None
        try:
            return source_stat(path)
        except OSError as exc:
            raise StorageError(f"{path}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        path = self.checked_path(key)
        try:
            _remove(path)
        except OSError as exc:
            raise StorageError(f"{path}: {exc.strerror or exc}") from exc

    def keys(self, suffix: str) -> Iterator[str]:
        self.ready()
        for top, folders, names in os.walk(self.root):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for name in sorted(n for n in names if n.endswith(suffix) and not n.startswith(".")):
                yield Path(top, name).relative_to(self.root).as_posix()


def copy_file(source: Path, final: Path, sha256: str | None, progress: Progress | None = None) -> Stat:
    """Copy a file to `final` through `files.atomic_file`; with `sha256`, nothing is renamed into place
    unless the bytes read hash to it."""
    with files.atomic_file(final) as out, open(source, "rb") as src:
        while chunk := src.read(files.CHUNK):
            out.write(chunk)
            if progress:
                progress(len(chunk))
        if sha256 is not None and out.sha256 != sha256:
            raise checksum_mismatch(str(source), sha256, out.sha256)
    return Stat(out.size, out.sha256)


def copy_tree(source: Path, final: Path, sha256: str | None, progress: Progress | None = None) -> Stat:
    """Copy a folder to a temporary folder beside `final`, fsync it, then rename it into place; with
    `sha256`, only if the files read hash to it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = files.temp_name(final)
    shutil.rmtree(temp, ignore_errors=True)
    try:
        stats = {path.relative_to(source).as_posix(): copy_file(path, temp / path.relative_to(source), None, progress)
                 for path in sorted(p for p in source.rglob("*") if p.is_file())}
        found = tree_stat(stats)
        if sha256 is not None and found.sha256 != sha256:
            raise checksum_mismatch(str(source), sha256, found.sha256)
        temp.mkdir(exist_ok=True)
        files.fsync_tree(temp)
        replace_folder(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return found


def replace_folder(temp: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(temp, final)
    files.fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    """Remove a file or folder; a folder is first renamed, so no half-deleted folder keeps its name."""
    if path.is_dir():
        doomed = path.with_name(f".deleting-{path.name}")
        os.replace(path, doomed)
        files.fsync_dir(path.parent)
        shutil.rmtree(doomed)
    elif path.exists():
        path.unlink()
        files.fsync_dir(path.parent)
