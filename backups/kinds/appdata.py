"""Application-data backups: the folders named in deployment configuration (`BACKUP_APP_DATA_DIRS`), archived
with a sha256 per file into the same catalogue, storage and retention as every other backup."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from backups import crypto
from backups.kinds import archive
from backups.kinds.logical import BackupError, backup_stamp
from backups.models import Backup
from portal.jobs import Reporter


def configured_folders() -> list[Path]:
    folders = [Path(f) for f in settings.BACKUP_APP_DATA_DIRS]
    if not folders:
        raise BackupError("BACKUP_APP_DATA_DIRS names no folder: there is no application data to back up")
    for folder in folders:
        if not folder.is_absolute() or not folder.is_dir():
            raise BackupError(f"BACKUP_APP_DATA_DIRS names {folder}, which is not an absolute path of a folder")
    return folders


def walk(folder: Path) -> Iterator[Path]:
    """The folder and everything below it, in a stable order, without following symbolic links."""
    yield folder
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        for name in [*sorted(names), *dirs]:
            yield Path(top) / name


def members(folders: list[Path]) -> Iterator[archive.Member]:
    for folder in folders:
        for path in walk(folder):
            yield archive.Member(str(path).lstrip("/"), path=path)


def total_bytes(folders: list[Path]) -> int:
    total = 0
    for folder in folders:
        for top, _, names in os.walk(folder):
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(top, name)).st_size
    return total


def take_appdata_backup(backup: Backup, reporter: Reporter) -> None:
    started = time.monotonic()
    folders = configured_folders()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", backup.policy.name).strip("-") or f"policy-{backup.policy_id}"
    backup.encrypted = backup.policy.encrypt
    backup.format = "tar"
    backup.name = f"{slug}_appdata_{backup_stamp(backup)}.tar" + (crypto.SUFFIX if backup.encrypted else "")
    backup.path = str(Path("appdata") / slug / backup.name)
    backup.estimated_bytes = total_bytes(folders)
    backup.save(update_fields=["encrypted", "format", "name", "path", "estimated_bytes"])
    reporter.progress(0, backup.estimated_bytes, f"archiving {len(folders)} folders")
    done = 0

    def on_read(n: int) -> None:
        nonlocal done
        done += n
        reporter.progress(done=done)

    result = archive.write_archive(backup.local_path, members(folders), encrypt=backup.encrypted, on_read=on_read)
    for skipped in result.skipped:
        reporter.log(f"skipped {skipped}")
    backup.size_bytes, backup.sha256 = result.written.size, result.written.sha256
    backup.manifest = {"folders": [str(f) for f in folders], "files": result.files, "skipped": result.skipped}
    backup.backup_seconds = time.monotonic() - started
    backup.save(update_fields=["size_bytes", "sha256", "manifest", "backup_seconds"])
    reporter.progress(backup.size_bytes, backup.size_bytes, "stored")
    reporter.log(f"archived {len(result.files)} files from {len(folders)} folders: {backup.size_bytes} bytes, "
                 f"sha256 {backup.sha256}")
