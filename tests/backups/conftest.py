"""Fixtures of the backup tests: a backup root of the test's own, policies on the small sample database, age
keys, running a backup the way the worker does, real pg_dump files catalogued as the pipeline would, a real
local S3-compatible server (moto_server), small real file systems, and scratch clusters that archive WAL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from django.db import connections
from django.utils import timezone

from backups import files, pipeline, runs
from backups.models import Backup, BackupPolicy, ConfigFileVersion, StorageLocation, WalArchive
from backups.storage import locations
from backups.wal import setup
from portal import pg
from portal.jobs import Reporter, run_job
from portal.models import ManagedDatabase
from tests.clusters import ScratchCluster, free_port
from tests.conftest import init_default_location  # noqa: F401 (the backup tests import it from here)


def local_location(name: str, path: Path) -> StorageLocation:
    """A local location as the admin makes one: checked, saved, its folder initialised (its marker written)."""
    location = StorageLocation(name=name, kind=StorageLocation.Kind.LOCAL, path=str(path))
    location.full_clean()
    locations.validate(location)
    location.save()
    locations.initialise(location, actor="test")
    return location


MOTO_SERVER = Path(sys.executable).parent / "moto_server"
BUCKET = "paws360-offsite"




@pytest.fixture
def policy(sample_database: ManagedDatabase, backup_root: Path) -> BackupPolicy:
    return BackupPolicy.objects.create(
        name=f"nightly-{uuid.uuid4().hex[:6]}", kind=BackupPolicy.Kind.LOGICAL, cluster=sample_database.cluster,
        database=sample_database, schedule="0 2 * * *", retention_days=30, min_verified=2,
    )


def dump(database: ManagedDatabase, final: Path, fmt: str = "custom", compress: int = 1) -> tuple[int, str]:
    """A real pg_dump of `database` to `final`, written the way the pipeline writes: (size, sha256)."""
    if fmt == "directory":
        temp = files.temp_name(final)
        pg.run("pg_dump", ["-Fd", "-j2", f"-Z{compress}", f"--file={temp}"], target=database.target(), timeout=120)
        files.fsync_tree(temp)
        os.replace(temp, final)
        size, digest, _ = files.tree_digest(final)
        return size, digest
    with files.atomic_file(final) as out:
        pg.run("pg_dump", ["-Fc", f"-Z{compress}"], target=database.target(), stdout_sink=out.write, timeout=120)
    return out.size, out.sha256


def catalog(policy: BackupPolicy, *, days_ago: float = 0, verification: str = Backup.Verification.VERIFIED,
            status: str = Backup.Status.SUCCEEDED, fmt: str = "custom", source: Backup | None = None,
            compress: int = 1) -> Backup:
    """A backup of the policy's database in its primary root, catalogued `status` and `verification`,
    taken `days_ago`. With `source`, a copy of that backup's real dump (saves a pg_dump per backup)."""
    suffix = ".dump" if fmt == "custom" else ".dir"
    name = f"{policy.database.name}_{uuid.uuid4().hex[:8]}{suffix}"
    path = f"logical/{policy.database.name}/{name}"
    final = policy.primary_root() / path
    final.parent.mkdir(parents=True, exist_ok=True)
    size, sha = None, ""
    if status == Backup.Status.SUCCEEDED:
        if source is not None:
            copy = shutil.copytree if source.local_path.is_dir() else shutil.copyfile
            copy(source.local_path, final)
            size, sha = source.size_bytes, source.sha256
        else:
            size, sha = dump(policy.database, final, fmt, compress)
    taken = timezone.now() - timedelta(days=days_ago)
    backup = Backup.objects.create(
        policy=policy, kind=policy.kind, cluster=policy.cluster, database=policy.database, name=name, path=path,
        format=fmt, size_bytes=size, sha256=sha, status=status, verification=verification,
        started=taken, finished=taken + timedelta(seconds=5), triggered_by="test",
        error="" if status == Backup.Status.SUCCEEDED else "pg_dump exited with code 1",
    )
    Backup.objects.filter(pk=backup.pk).update(created=taken)
    backup.refresh_from_db()
    return backup


@dataclass
class MotoServer:
    """moto's S3-compatible server as a real process on a free port; stop() and start() it to cause faults."""

    port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not listen on {self.port}; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="offsite-test", aws_secret_access_key="offsite-test")

    def create_bucket(self, name: str = BUCKET) -> None:
        self.client().create_bucket(Bucket=name)


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer(free_port(), tmp_path / "moto_server.log")
    server.start()
    server.create_bucket()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_credentials(settings, tmp_path: Path) -> str:
    """A real AWS shared credentials file named by S3_CREDENTIALS_FILE, with the profile the location names."""
    path = tmp_path / "aws-credentials"
    path.write_text("[offsite-test]\naws_access_key_id = offsite-test\naws_secret_access_key = offsite-test\n")
    path.chmod(0o600)
    settings.S3_CREDENTIALS_FILE = str(path)
    settings.S3_CONNECT_TIMEOUT = 2
    settings.S3_MAX_ATTEMPTS = 2
    return "offsite-test"


@pytest.fixture
def s3_location(db, s3_server: MotoServer, s3_credentials: str) -> StorageLocation:
    return StorageLocation.objects.create(
        name="offsite", kind=StorageLocation.Kind.S3, endpoint_url=s3_server.url, bucket=BUCKET,
        prefix="paws360/backups", region="us-east-1", credentials_profile=s3_credentials,
    )


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount real tmpfs file systems of a given size (`tmpfs("128k")`); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"tmpfs-{len(mounts)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)
        mounts.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounts:
            if os.path.ismount(point):  # a test may have unmounted it already
                subprocess.run(["umount", str(point)], check=True)


@pytest.fixture
def tiny_fs(tmpfs) -> Path:
    """A real 128 kB tmpfs: a second local location too small for a sample dump (about 220 kB)."""
    return tmpfs("128k")


ARCHIVING_OFF = {"archive_mode": "on", "archive_command": "'/bin/true'"}


@pytest.fixture
def archiving(scratch_cluster: ScratchCluster, db) -> WalArchive:
    """The scratch cluster registered as managed and archiving (zstd) into a folder of its own, proved."""
    cluster = scratch_cluster.register()
    return setup.configure(cluster, folder=scratch_cluster.root / "wal", log=lambda line: None)


def switch_wal(target: pg.Target, rows: int = 1) -> str:
    """Write something, close the segment; the name of the segment just closed."""
    with pg.connect(target) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (i int, s text)")
        conn.execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, %s) g", [rows])
        return conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]


@pytest.fixture
def real_segments(tmp_path: Path) -> Iterator[tuple[int, list[Path]]]:
    """Two real, closed WAL segments copied out of a scratch cluster's pg_wal, and its system identifier."""
    cluster = ScratchCluster().create(ARCHIVING_OFF)
    cluster.start()
    try:
        with pg.connect(cluster.target()) as conn:
            sysid = int(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
        copies = []
        for _ in range(2):
            name = switch_wal(cluster.target(), rows=1000)
            copies.append(Path(shutil.copy(cluster.data / "pg_wal" / name, tmp_path / name)))
        yield sysid, copies
    finally:
        cluster.destroy()


@pytest.fixture
def logical_policy(sample_database, backup_root) -> BackupPolicy:
    return BackupPolicy.objects.create(name="paws360 full", kind=BackupPolicy.Kind.LOGICAL,
                                       cluster=sample_database.cluster, database=sample_database)


@pytest.fixture
def age_keys(tmp_path: Path, settings, monkeypatch) -> tuple[Path, Path]:
    """A real age key pair; the deployment's configuration names the two files."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    identity, recipients = keys / "backup.key", keys / "backup.pub"
    subprocess.run(["/usr/bin/age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(["/usr/bin/age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True)
    recipients.write_text(public.stdout)
    settings.BACKUP_AGE_IDENTITY_FILE, settings.BACKUP_AGE_RECIPIENTS_FILE = str(identity), str(recipients)
    monkeypatch.setenv("BACKUP_AGE_IDENTITY_FILE", str(identity))
    monkeypatch.setenv("BACKUP_AGE_RECIPIENTS_FILE", str(recipients))
    return identity, recipients


def run_now(policy: BackupPolicy, actor: str = "tester") -> Backup:
    """Create the backup row as "Run now" does and run the pipeline here, as a worker would."""
    backup = runs.create(policy, actor=actor, via="test")
    run_job(Backup, backup.pk, pipeline.perform)
    backup.refresh_from_db()
    return backup


def config_versions(cluster, app_file: Path, settings, *contents: str) -> list[ConfigFileVersion]:
    """One configuration backup of `cluster` per content of the application file `app_file`; the file's
    versions, oldest first."""
    settings.BACKUP_APP_CONFIG_FILES = [str(app_file)]
    policy = BackupPolicy.objects.create(name=f"{cluster} config", kind="config", cluster=cluster)
    for content in contents:
        app_file.write_text(content)
        run_now(policy)
    return list(ConfigFileVersion.objects.filter(source=f"app:{app_file}").order_by("created"))


def in_thread(func: Callable[..., object]) -> Callable[..., None]:
    """`func` for a thread of its own: its database connection is closed when it ends."""

    def run(*args: object) -> None:
        try:
            func(*args)
        finally:
            connections.close_all()

    return run


def leftovers(root: Path) -> list[Path]:
    """Temporary files or folders anywhere under `root`."""
    return [p for p in root.rglob(".partial-*")]


class QuietReporter(Reporter):
    """A Reporter that is not started: what is reported is written when it is flushed, if ever."""
