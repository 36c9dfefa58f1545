"""Restoring a logical backup into a database: never from a backup whose checksum does not match the catalogue.

An encrypted backup is decrypted on the fly into pg_restore's standard input (no clear copy on disk, and so
no parallel jobs); an unencrypted file or folder is restored with parallel jobs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings

from backups import crypto, files
from backups.models import Backup
from portal import pg
from portal.jobs import Reporter

# A restore onto a scratch cluster (portal/scratch.py): the roles, tablespaces and security label providers of the
# backup's own cluster need not exist there, and a subscription restored there would name production's publisher.
ONTO_SCRATCH = ("--no-owner", "--no-privileges", "--no-tablespaces", "--no-security-labels", "--no-subscriptions")


class ChecksumMismatch(Exception):
    """The stored backup is not the one catalogued: it must not be restored."""


class BackupMissing(ChecksumMismatch):
    """A file of the backup is not there (deleted, or its disk not mounted): not restorable, but not found damaged."""


def check_present(backup: Backup) -> None:
    """Cheap enough for a web request: the backup's files are there with their catalogued size (a truncated file is
    caught here; the full sha256 is the recovery's own first step, `check_checksum`)."""
    path = backup.local_path
    if not path.exists():
        raise BackupMissing(f"{path} is missing")
    size = files.tree_size(path) if path.is_dir() else path.stat().st_size
    if backup.size_bytes is not None and size != backup.size_bytes:
        raise ChecksumMismatch(f"{backup.name} holds {size} bytes, catalogued {backup.size_bytes}")
    extra = backup.manifest.get("globals")
    if extra and not (backup.policy.primary_root() / extra["path"]).exists():
        raise BackupMissing(f"the globals file {extra['path']} is missing")


def check_checksum(backup: Backup) -> None:
    """Recompute the stored backup's sha256 (and its globals file's); raise ChecksumMismatch unless they match."""
    path = backup.local_path
    if not path.exists():
        raise BackupMissing(f"{path} is missing")
    if path.is_dir():
        _, digest, per_file = files.tree_digest(path)
        if digest != backup.sha256:
            catalogued = backup.manifest.get("files", {})
            differing = sorted(n for n in catalogued.keys() | per_file.keys() if catalogued.get(n) != per_file.get(n))
            raise ChecksumMismatch(f"sha256 of {backup.name} is {digest}, catalogued {backup.sha256}; "
                                   f"files that differ: {', '.join(differing[:10]) or 'none listed'}")
    else:
        digest = files.sha256_of(path)
        if digest != backup.sha256:
            raise ChecksumMismatch(f"sha256 of {backup.name} is {digest}, catalogued {backup.sha256}")
    extra = backup.manifest.get("globals")
    if extra:
        globals_path = backup.policy.primary_root() / extra["path"]
        if not globals_path.exists():
            raise BackupMissing(f"the globals file {extra['path']} is missing")
        if (digest := files.sha256_of(globals_path)) != extra["sha256"]:
            raise ChecksumMismatch(f"sha256 of the globals file {extra['path']} is {digest}, "
                                   f"catalogued {extra['sha256']}")


def restore_logical(backup: Backup, target: pg.Target, reporter: Reporter, *, jobs: int = 1,
                    extra_args: tuple[str, ...] = (), checksum_checked: bool = False,
                    on_stderr: Callable[[str], None] | None = None,
                    on_start: Callable[[int], None] | None = None) -> None:
    """Restore `backup` into the existing database `target`; stop at the first error. The checksum is checked
    first unless the caller just did (`checksum_checked`)."""
    if not checksum_checked:
        check_checksum(backup)
    path = backup.local_path
    args = ["--exit-on-error", "--verbose", f"--dbname={target.dbname}", *extra_args]
    run = functools.partial(pg.run, "pg_restore", target=target, on_stderr=on_stderr or _restore_logger(reporter),
                            cancel=reporter.cancel, on_start=on_start, timeout=settings.TASK_TIMEOUT)
    if backup.encrypted:
        with crypto.decrypting_reader(path) as clear:
            run(args, stdin=clear)
        return
    run([*args, f"--jobs={max(1, jobs)}", str(path)])


def _restore_logger(reporter: Reporter) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        text = line.removeprefix("pg_restore: ")
        if text.startswith("processing data for table"):
            reporter.progress(note=f"verifying: {text}")
        elif not line.startswith("pg_restore: ") or any(w in text for w in ("error", "warning", "fatal")):
            reporter.log(line)

    return on_line
