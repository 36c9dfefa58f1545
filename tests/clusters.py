"""Throwaway PostgreSQL clusters for tests: real initdb, real pg_ctl, a password in a real passfile."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from portal import pg

RUN_AS = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class ScratchCluster:
    """A small cluster in its own folder, on a free port, with role `tester` whose password is only in a
    passfile readable by the test process."""

    role = "tester"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="paws360-cluster-"))
        self.root.chmod(0o755)
        _give_to_owner(self.root)
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.passfile = Path(tempfile.mkdtemp(prefix="paws360-secret-")) / "pgpass"

    def create(self, conf: dict[str, str] | None = None) -> ScratchCluster:
        """initdb, then append `conf` (setting -> value as written in postgresql.conf) to the defaults."""
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        _give_to_owner(pwfile)
        pg.run("initdb", [f"--pgdata={self.data}", f"--username={self.role}", f"--pwfile={pwfile}",
                          "--auth=scram-sha-256", "--data-checksums", "--no-sync"], run_as=RUN_AS, timeout=120)
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as out:
            out.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\nshared_buffers = 32MB\n")
            out.write("".join(f"{name} = {value}\n" for name, value in (conf or {}).items()))
        self.passfile.write_text(f"127.0.0.1:{self.port}:*:{self.role}:{self.password}\n")
        self.passfile.chmod(0o600)
        return self

    def start(self) -> None:
        pg.pg_ctl("start", self.data, run_as=RUN_AS, log_file=self.root / "server.log", timeout=60)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            pg.pg_ctl("stop", self.data, run_as=RUN_AS, timeout=60)

    def folder(self, name: str) -> Path:
        """A folder inside the cluster's own, owned by the cluster's OS user (an archive folder)."""
        path = self.root / name
        path.mkdir(exist_ok=True)
        _give_to_owner(path)
        return path

    def register(self, name: str = "scratch"):
        """Register as a managed cluster the portal controls with pg_ctl (needs the database)."""
        from portal.models import ManagedCluster

        cluster = ManagedCluster.objects.create(
            name=name, host="127.0.0.1", port=self.port, role=self.role, passfile=str(self.passfile),
            control=ManagedCluster.Control.PG_CTL, data_directory=str(self.data), os_user=RUN_AS,
        )
        from portal import targets

        targets.refresh(cluster)
        return cluster

    def target(self, dbname: str = "postgres") -> pg.Target:
        return pg.Target("127.0.0.1", self.port, self.role, dbname, passfile=str(self.passfile), major=15)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.passfile.parent, ignore_errors=True)
