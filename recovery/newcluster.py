"""A new local cluster built from a base backup: its folder, files, recovery settings, server, and removal.

RECOVERY_ROOT/<name>/ belongs to the cluster's OS user (mode 0700) and holds `data/` (PGDATA, 0700), `run/`
(its socket) and `server.log`. The source cluster's data directory is never written: everything here
comes from the base backup's files (extracted by `backups.kinds.base_extract`, as the cluster's OS user, so every
file is that user's from the start) and the WAL archive.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from portal import pg, programs
from portal.jobs import alive
from portal.models import ManagedCluster

STOP_TIMEOUT = 120


class BuildError(Exception):
    """The new cluster could not be built; the message says why."""


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
        programs.give(folder, cluster.os_user)


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
    programs.give(path, os_user)


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
