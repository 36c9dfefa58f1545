"""Local data directories a promotion moves: which server runs from one, stopping and starting it through pg_ctl
as its OS user, renaming within one file system, and the recovery settings a point-in-time recovery appended to
postgresql.auto.conf, taken out again (and kept aside, so a rollback can put them back)."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from portal import pg

START_TIMEOUT = 300
STOP_TIMEOUT = 120
# newcluster.write_settings writes "\n# <header>\n" then one "name = 'value'" line per setting; pitr's header is
# "Point-in-time recovery #<pk> of <source> by the PAWS360 portal, <time>".
PITR_HEADER = re.compile(r"^# Point-in-time recovery #\d+ of .* by the PAWS360 portal, ")
SETTING = re.compile(r"^\s*([a-z_]+)\s*=")


class MoveError(Exception):
    """A data directory could not be moved, stopped, started or prepared; the message says why."""


@dataclass(frozen=True)
class Server:
    """A local server: its data directory, the OS user that owns it, its major version."""

    data: Path
    os_user: str
    major: int | None

    @property
    def log(self) -> Path:
        return self.data.parent / "server.log"  # the convention of walsetup and newcluster

    def pid(self) -> int | None:
        """The pid of the postmaster running from this data directory, or None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.data).encode() in cmdline else None

    def stop(self) -> bool:
        """pg_ctl stop -m fast; True if it was running. Refuses to go on while the postmaster still lives."""
        pid = self.pid()
        if pid is None:
            return False
        pg.pg_ctl("stop", self.data, major=self.major, run_as=self.os_user, timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid() is not None:
            raise MoveError(f"the server in {self.data} (pid {pid}) did not stop")
        return True

    def start(self) -> None:
        """pg_ctl start, waiting until it accepts connections (or failing with pg_ctl's and the log's words)."""
        try:
            pg.pg_ctl("start", self.data, major=self.major, run_as=self.os_user, log_file=self.log,
                      timeout=START_TIMEOUT)
        except pg.PgToolError as exc:
            raise MoveError(f"{self.data} did not start: {exc}; {self.log_tail()}") from exc

    def log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"no server log at {self.log}"
        return f"server log {self.log}: " + " | ".join(tail)


def same_file_system(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def rename(source: Path, destination: Path) -> None:
    """os.rename within one file system; refuses to overwrite."""
    if destination.exists():
        raise MoveError(f"{destination} exists: {source} was not moved there")
    os.rename(source, destination)
    _fsync_dir(destination.parent)
    if source.parent != destination.parent:
        _fsync_dir(source.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pitr_block(text: str) -> tuple[int, int] | None:
    """The [first, last) line numbers of the block a point-in-time recovery appended (its blank line, header and
    settings), or None when it is not there (ALTER SYSTEM rewrites the file without comments)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if PITR_HEADER.match(line):
            end = i + 1
            while end < len(lines) and SETTING.match(lines[end]):
                end += 1
            start = i - 1 if i > 0 and not lines[i - 1].strip() else i
            return start, end
    return None


def strip_pitr_settings(data: Path, keep_as: Path) -> list[str]:
    """Take the point-in-time recovery's block out of postgresql.auto.conf (the original kept as `keep_as`); the
    lines removed. The file keeps its owner and mode."""
    auto = data / "postgresql.auto.conf"
    text = auto.read_text()
    block = pitr_block(text)
    if block is None:
        raise MoveError(f"{auto} has no point-in-time recovery block: it was rewritten since the recovery "
                        "(ALTER SYSTEM?), so its settings cannot be told from production's")
    shutil.copy2(auto, keep_as)
    lines = text.splitlines(keepends=True)
    removed = [line.rstrip("\n") for line in lines[block[0]:block[1]] if line.strip()]
    replace_keeping_owner(auto, "".join(lines[:block[0]] + lines[block[1]:]))
    for signal_file in ("recovery.signal", "standby.signal"):
        (data / signal_file).unlink(missing_ok=True)
    return removed


def put_back_settings(data: Path, kept: Path) -> bool:
    """Restore postgresql.auto.conf as the recovery left it; True if there was a kept copy."""
    if not kept.exists():
        return False
    replace_keeping_owner(data / "postgresql.auto.conf", kept.read_text())
    kept.unlink()
    return True


def replace_keeping_owner(path: Path, text: str) -> None:
    info = path.stat()
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, info.st_mode & 0o777)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        os.chown(temp, info.st_uid, info.st_gid)
    os.replace(temp, path)


CONFIG_FILES = ("postgresql.conf", "pg_hba.conf", "pg_ident.conf", "postgresql.auto.conf")


def carry_config(old: Path, new: Path) -> list[str]:
    """Production's own configuration files, as they are now, over the base backup's copies where they differ
    (changed since the backup: an archive_command, a pg_hba line). The names of those carried over."""
    carried = []
    for name in CONFIG_FILES:
        source, target = old / name, new / name
        if not source.is_file():
            continue
        text = source.read_text()
        if target.is_file() and target.read_text() == text:
            continue
        if not target.exists():
            shutil.copy2(source, target)
            if os.geteuid() == 0:
                info = source.stat()
                os.chown(target, info.st_uid, info.st_gid)
        else:
            replace_keeping_owner(target, text)
        carried.append(name)
    return carried


def mark_history_for_archiving(data: Path) -> list[str]:
    """Timeline history files that were never archived (the recovered copy ran with archive_mode off) get a
    .ready status, so production's archiver pushes them: a later recovery must see the new timeline."""
    status = data / "pg_wal" / "archive_status"
    marked = []
    for history in sorted((data / "pg_wal").glob("*.history")):
        if not (status / f"{history.name}.done").exists() and not (status / f"{history.name}.ready").exists():
            ready = status / f"{history.name}.ready"
            ready.touch()
            owner = history.stat()
            if os.geteuid() == 0:
                os.chown(ready, owner.st_uid, owner.st_gid)
            marked.append(history.name)
    return marked
