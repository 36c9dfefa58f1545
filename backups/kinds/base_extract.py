"""The one extractor of base backups, for their verification and for point-in-time recovery.

GNU tar (with zstd for `.tar.zst`) runs through the runner (`portal.programs`: the job's tag, a time limit, its own
session), as the OS user the caller names, with umask 077. The portal reads each tar file once, feeding tar and
hashing the same bytes, and refuses the backup when a file's sha256 is not the one catalogued when it was written:
the damaged file is named. base.tar* goes into the destination, pg_wal.tar* into its pg_wal folder. A backup with a
tablespace (`<oid>.tar`) is refused: base.tar's link for it points at the source cluster's own tablespace folder.

GNU tar keeps what it writes inside the destination: it strips a leading `/`, skips a name with `..` (and then
exits non-zero) and writes a link that points outside only once nothing more is extracted, so that no member
lands through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from backups.models import Backup
from portal import programs
from portal.jobs import Cancelled

CHUNK = 1024 * 1024
TAR = "/usr/bin/tar"
TAR_FLAGS = {".tar": [], ".tar.zst": ["--zstd"], ".tar.gz": ["--gzip"]}


class ExtractError(Exception):
    """The base backup could not be extracted; the message says why."""


class DamagedBackup(ExtractError):
    """A file of the base backup is missing or is not the one catalogued: the backup must not be used."""


def _tar_flags(path: Path) -> list[str]:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith((".zst", ".gz")) else path.suffix
    if suffix not in TAR_FLAGS:
        raise ExtractError(f"{path.name}: not a tar file this extraction reads")
    return TAR_FLAGS[suffix]


def backup_files(backup: Backup) -> list[tuple[Path, str, str]]:
    """(file, where it goes below the destination, catalogued sha256) for base.tar* and pg_wal.tar*, base first."""
    folder = backup.local_path
    if not folder.is_dir():
        raise ExtractError(f"{backup}: {folder} is not there")
    catalogued = backup.manifest.get("files") or {}
    found: list[tuple[Path, str, str]] = []
    for path in sorted(folder.glob("*.tar*"), key=lambda p: (not p.name.startswith("base."), p.name)):
        kind = path.name.split(".tar")[0]
        if kind not in ("base", "pg_wal"):
            raise ExtractError(f"{backup} has tablespace {kind} ({path.name}): extracting tablespaces is not "
                               "supported by the portal")
        if path.name not in catalogued:
            raise DamagedBackup(f"{backup}: {path.name} has no checksum in the catalog: refused")
        found.append((path, "pg_wal" if kind == "pg_wal" else "", catalogued[path.name]))
    missing = {n for n in catalogued if ".tar" in n} - {p.name for p, _, _ in found}
    if missing or not found or not found[0][0].name.startswith("base."):
        raise DamagedBackup(f"{backup}: {', '.join(sorted(missing)) or 'base.tar'} missing from {folder}: refused")
    return found


def extract(backup: Backup, into: Path, *, os_user: str | None, on_bytes: Callable[[int, int], None],
            cancel: threading.Event | None = None) -> None:
    """Unpack the base backup into the existing, empty folder `into`, as `os_user` (who owns what tar writes: the
    cluster's OS user for a data directory a server will run on; None, the portal's own user, for a copy that the
    portal reads back itself). `on_bytes(done, total)` follows the bytes read. Raises DamagedBackup, ExtractError,
    or Cancelled when `cancel` is set."""
    parts = backup_files(backup)
    total = sum(path.stat().st_size for path, _, _ in parts)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        on_bytes(done, total)

    for path, below, expected in parts:
        destination = into / below
        if not destination.exists():
            destination.mkdir(mode=0o700)
            programs.give(destination, os_user)
        extract_file(path, destination, expected, os_user=os_user, step=step, cancel=cancel)


def extract_file(path: Path, destination: Path, expected: str, *, os_user: str | None,
                 step: Callable[[int], None] = lambda count: None, cancel: threading.Event | None = None) -> None:
    """One tar file into `destination`, refused (DamagedBackup) unless its sha256 is `expected`. A damaged file is
    told from a tar error: the whole file is hashed even when tar gave up."""
    argv = [TAR, "--extract", "--file=-", f"--directory={destination}", "--no-same-owner", *_tar_flags(path)]
    with programs.started(argv, stdin=programs.PIPE, env={"LC_ALL": "C"}, umask=0o077, run_as=os_user,
                          timeout=programs.task_timeout()) as tar:
        actual = _feed(path, tar, step, cancel)
        try:
            tar.wait()
            failure = None
        except programs.ProgramError as exc:
            failure = exc
    if actual != expected:
        raise DamagedBackup(f"{path.name}: sha256 {actual} does not match {expected}, catalogued when the backup "
                            "was written: the backup is damaged; refused")
    if failure is not None:
        raise ExtractError(f"extracting {path.name}: {failure}") from failure


def _feed(path: Path, tar: programs.Running, step: Callable[[int], None], cancel: threading.Event | None) -> str:
    """Read `path` once: each chunk hashed and written to tar. Its sha256."""
    assert tar.stdin is not None
    with contextlib.suppress(OSError):  # a pipe as large as a chunk: hashing the next one overlaps tar's reading
        fcntl.fcntl(tar.stdin.fileno(), fcntl.F_SETPIPE_SZ, CHUNK)
    digest = hashlib.sha256()
    broken = False
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            if not broken:
                try:
                    tar.stdin.write(chunk)
                except BrokenPipeError:
                    broken = True  # tar gave up; go on hashing, to tell a damaged file from a tar error
            step(len(chunk))
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled on request while extracting the base backup")
    return digest.hexdigest()
