"""The portal's log file, `portal.log`, written by several processes at once and rotated safely.

Every process (the gunicorn workers, the django-q2 worker and its children, commands) appends to the same file
through a `PortalFileHandler`, a `WatchedFileHandler`: before each record it checks that the path still names
the file it has open, and reopens it when not. Rotation is one `rename` done by one process at a time (the
minutely housekeeping task, under an exclusive lock): `portal.log` becomes `portal.log.1` (older ones move up,
the oldest is dropped), a new `portal.log` is created with the old one's mode and owner, and every process moves
to it at its next record. A record written by another process between the rename and its reopening lands at the
end of `portal.log.1`: nothing is lost, nothing is written twice.

Standard library only: the settings import it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from logging.handlers import WatchedFileHandler
from pathlib import Path

FILE_MODE = 0o660  # the web server's and the worker's OS users share a group
FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(process)d %(name)s %(message)s"


def create(path: Path, like: os.stat_result | None = None) -> None:
    """Create the file if missing: mode 0660 whatever the umask, and the owner and group of `like` (the file it
    replaces) when this process may give them."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
        if like is not None and (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):  # not root: the file stays ours, group-writable
                os.fchown(fd, like.st_uid, like.st_gid)
    finally:
        os.close(fd)


class PortalFileHandler(WatchedFileHandler):
    """A `WatchedFileHandler` that makes its folder and creates the file group-writable."""

    def __init__(self, filename: str, **kwargs: object) -> None:
        super().__init__(filename, delay=True, **kwargs)

    def _open(self):  # logging's own signature
        path = Path(self.baseFilename)
        path.parent.mkdir(parents=True, exist_ok=True)
        create(path)
        stream = super()._open()
        opened = os.fstat(stream.fileno())
        self.dev, self.ino = opened.st_dev, opened.st_ino  # the first, delayed, open too
        return stream


def logging_config(path: Path, level: str = "INFO") -> dict:
    """The `LOGGING` setting: every record to `path` and to stderr, each with its request id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "portal.requestid.RequestIdFilter"}},
        "formatters": {"plain": {"format": FORMAT}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
            "file": {"()": "portal.logfiles.PortalFileHandler", "filename": str(path), "formatter": "plain",
                     "filters": ["request_id"]},
        },
        "root": {"handlers": ["console", "file"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
    }


def rotate(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate `path` when it is larger than `max_bytes`, keeping `keep` old files (`.1` the newest). Several
    processes may call this at once: one rotates, the others find the new file small. True when it rotated."""
    keep = max(keep, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    create(lock)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            current = path.stat()
        except FileNotFoundError:
            return False
        if current.st_size <= max_bytes:
            return False
        old = [path.with_name(f"{path.name}.{n}") for n in range(1, keep + 1)]
        old[-1].unlink(missing_ok=True)
        for newer, older in zip(reversed(old[:-1]), reversed(old[1:]), strict=True):
            if newer.exists():
                newer.rename(older)
        path.rename(old[0])
        create(path, like=current)
    logging.getLogger(__name__).info("rotated %s (%d bytes) to %s", path, current.st_size, old[0].name)
    return True
