"""A new local cluster built from a base backup: its folder, files, recovery settings, server, and removal.

RECOVERY_ROOT/<name>/ belongs to the cluster's OS user (mode 0700) and holds `data/` (PGDATA, 0700), `run/`
(its socket) and `server.log`. The source cluster's data directory is never written: everything here
comes from the base backup's files and the WAL archive.

Extraction runs GNU tar (with zstd) as the cluster's OS user, so every file is that user's from the start;
the portal reads each tar file once, feeding tar and hashing the same bytes, and refuses the backup when a
file's sha256 is not the one catalogued when it was written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from backups.models import Backup
from portal import pg
from portal.jobs import Cancelled, alive
from portal.models import ManagedCluster

CHUNK = 1024 * 1024
TAR = "/usr/bin/tar"
STOP_TIMEOUT = 120
# The tar files a base backup has; others are tablespaces (<oid>.tar), which this restore does not place.
TAR_FLAGS = {".tar": [], ".tar.zst": ["--zstd"], ".tar.gz": ["--gzip"]}


class BuildError(Exception):
    """The new cluster could not be built; the message says why."""


class DamagedBackup(BuildError):
    pass


@dataclass(frozen=True)
class NewCluster:
    root: Path
    os_user: str
    major: int | None = None

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "server.log"


def folder_for(name: str) -> Path:
    return Path(settings.RECOVERY_ROOT) / name


def is_ours(path: Path) -> bool:
    """Inside RECOVERY_ROOT (and not RECOVERY_ROOT itself): the only folders the portal ever removes."""
    root = Path(settings.RECOVERY_ROOT).resolve()
    resolved = path.resolve()
    return resolved != root and root in resolved.parents


def _owner(os_user: str) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(os_user)
    return entry.pw_uid, entry.pw_gid


def _give(path: Path, os_user: str) -> None:
    owner = _owner(os_user)
    if owner:
        os.chown(path, *owner)


def create_folders(cluster: NewCluster) -> None:
    """The cluster's folders, new and empty, its OS user's, mode 0700. Refuses a folder that exists."""
    top = Path(settings.RECOVERY_ROOT)
    top.mkdir(mode=0o755, parents=True, exist_ok=True)
    if cluster.root.exists():
        raise BuildError(f"{cluster.root} already exists: another recovery's folder, left for a DBA to look at "
                         "(remove it, or choose another name)")
    for folder in (cluster.root, cluster.data, cluster.run):
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)
        _give(folder, cluster.os_user)


def _tar_flags(path: Path) -> list[str]:
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith((".zst", ".gz")) else path.suffix
    if suffix not in TAR_FLAGS:
        raise BuildError(f"{path.name}: not a tar file this restore reads")
    return TAR_FLAGS[suffix]


def backup_files(backup: Backup) -> list[tuple[Path, str, str]]:
    """(file, where it goes below PGDATA, catalogued sha256) for base.tar* and pg_wal.tar*, base first."""
    folder = backup.local_path
    if not folder.is_dir():
        raise BuildError(f"{backup}: {folder} is not there")
    catalogued = backup.manifest.get("files") or {}
    found: list[tuple[Path, str, str]] = []
    for path in sorted(folder.glob("*.tar*"), key=lambda p: (not p.name.startswith("base."), p.name)):
        kind = path.name.split(".tar")[0]
        if kind not in ("base", "pg_wal"):
            raise BuildError(f"{backup} has tablespace {kind} ({path.name}): restoring tablespaces is not "
                             "supported by the portal's point-in-time recovery")
        if path.name not in catalogued:
            raise DamagedBackup(f"{backup}: {path.name} has no checksum in the catalog: refused")
        found.append((path, "pg_wal" if kind == "pg_wal" else "", catalogued[path.name]))
    missing = {n for n in catalogued if ".tar" in n} - {p.name for p, _, _ in found}
    if missing or not found or not found[0][0].name.startswith("base."):
        raise DamagedBackup(f"{backup}: {', '.join(sorted(missing)) or 'base.tar'} missing from {folder}: refused")
    return found


def extract(cluster: NewCluster, backup: Backup, on_bytes: Callable[[int, int], None],
            cancel: threading.Event | None = None) -> None:
    """Unpack the base backup into the new, empty data directory."""
    parts = backup_files(backup)
    total = sum(path.stat().st_size for path, _, _ in parts)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        on_bytes(done, total)

    for path, below, expected in parts:
        destination = cluster.data / below
        if not destination.exists():
            destination.mkdir(mode=0o700)
            _give(destination, cluster.os_user)
        _extract_one(path, destination, expected, cluster.os_user, step, cancel)


def _tar(destination: Path, flags: list[str], os_user: str) -> subprocess.Popen[bytes]:
    owner = _owner(os_user)
    demote = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    return subprocess.Popen(
        [TAR, "--extract", "--file=-", f"--directory={destination}", "--no-same-owner", *flags],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, umask=0o077,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, **demote)  # type: ignore[arg-type]


def _extract_one(path: Path, destination: Path, expected: str, os_user: str, step: Callable[[int], None],
                 cancel: threading.Event | None) -> None:
    proc = _tar(destination, _tar_flags(path), os_user)
    with contextlib.suppress(OSError):  # a pipe as large as a chunk: hashing the next one overlaps tar's reading
        fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, CHUNK)  # type: ignore[union-attr]
    errors: deque[str] = deque(maxlen=20)
    reader = threading.Thread(target=lambda: errors.extend(
        line.decode(errors="replace").rstrip() for line in proc.stderr), daemon=True)  # type: ignore[union-attr]
    reader.start()
    digest = hashlib.sha256()
    broken = False
    try:
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                if not broken:
                    try:
                        proc.stdin.write(chunk)  # type: ignore[union-attr]
                    except BrokenPipeError:
                        broken = True  # tar gave up; go on hashing, to tell a damaged file from a tar error
                step(len(chunk))
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled on request while extracting the base backup")
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()  # type: ignore[union-attr]
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    actual = digest.hexdigest()
    if actual != expected:
        raise DamagedBackup(f"{path.name}: sha256 {actual} does not match {expected}, catalogued when the backup "
                            "was written: the backup is damaged; refused")
    if returncode != 0:
        raise BuildError(f"tar exited with code {returncode} extracting {path.name}: {'; '.join(errors)}")


def conf_value(value: str) -> str:
    """A postgresql.conf string: single quotes doubled, backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def write_settings(cluster: NewCluster, values: dict[str, str], header: str) -> None:
    """Append to postgresql.auto.conf (read last, so these win over the source's own settings, ALTER SYSTEM
    ones included), and create recovery.signal. A backup of a cluster whose configuration lives outside its
    data directory (Debian's /etc/postgresql) gets minimal postgresql.conf and pg_hba.conf files."""
    data = cluster.data
    if not (data / "postgresql.conf").exists():
        _write_new(data / "postgresql.conf", "# Written by the PAWS360 portal: the source's lived outside PGDATA\n",
                   cluster.os_user)
    if not (data / "pg_hba.conf").exists():
        _write_new(data / "pg_hba.conf", "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n",
                   cluster.os_user)
    (data / "standby.signal").unlink(missing_ok=True)  # a backup of a standby: recover, do not follow a primary
    auto = data / "postgresql.auto.conf"
    lines = [f"\n# {header}\n", *(f"{name} = {conf_value(value)}\n" for name, value in values.items())]
    if auto.exists():
        with open(auto, "a") as out:
            out.writelines(lines)
    else:
        _write_new(auto, "".join(lines), cluster.os_user)
    _write_new(data / "recovery.signal", "", cluster.os_user)


def _write_new(path: Path, text: str, os_user: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
    _give(path, os_user)


def start(cluster: NewCluster) -> None:
    """Launch the server and return at once: the caller follows the recovery in the log and the server."""
    pg.pg_ctl("start", cluster.data, major=cluster.major, run_as=cluster.os_user, log_file=cluster.log,
              timeout=60, wait=False)


def postmaster_pid(cluster: NewCluster) -> int | None:
    """The pid of this cluster's running postmaster, or None."""
    try:
        pid = int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(cluster.data).encode() in cmdline else None  # pg_ctl starts it with -D <data>


def stop(cluster: NewCluster) -> bool:
    """Stop the server if it runs (fast shutdown; immediate if that fails). True if it was running."""
    pid = postmaster_pid(cluster)
    if pid is None:
        return False
    try:
        pg.pg_ctl("stop", cluster.data, major=cluster.major, run_as=cluster.os_user, timeout=STOP_TIMEOUT)
    except pg.PgToolError:
        if postmaster_pid(cluster) is not None:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the copy is being thrown away or is stuck
    deadline = time.monotonic() + STOP_TIMEOUT
    while (postmaster_pid(cluster) is not None or alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if postmaster_pid(cluster) is not None or alive(pid):
        raise BuildError(f"the server in {cluster.data} (pid {pid}) did not stop")
    return True


def _refuse_foreign(cluster: NewCluster) -> None:
    if not is_ours(cluster.root):
        raise BuildError(f"{cluster.root} is not inside RECOVERY_ROOT ({settings.RECOVERY_ROOT}): not removed")
    others = ManagedCluster.objects.filter(data_directory=str(cluster.data)).exclude(name=cluster.name)
    if others.exists():
        raise BuildError(f"{cluster.data} is the data directory of {others.first()}: not removed")


def discard(cluster: NewCluster, keep_log_as: Path) -> Path:
    """After a failure: stop the server and remove the folder, data and all (a copy of student records that
    nothing manages and nothing can resume). The server log is moved to `keep_log_as` for the DBA."""
    _refuse_foreign(cluster)
    stop(cluster)
    if cluster.log.exists():
        keep_log_as.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.move(cluster.log, keep_log_as)
    shutil.rmtree(cluster.root, ignore_errors=True)
    return keep_log_as


def remove(cluster: NewCluster) -> None:
    """A drill's scratch cluster when the drill is over: stopped, and its whole folder removed."""
    _refuse_foreign(cluster)
    stop(cluster)
    shutil.rmtree(cluster.root, ignore_errors=True)
