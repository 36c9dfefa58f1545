"""Fixtures of the point-in-time tests: a scratch cluster archiving its WAL for real, a base backup taken
through the portal, marker rows around a recorded moment, and a private RECOVERY_ROOT whose servers are
stopped afterwards. Import the fixtures into a test module (`from tests.recovery.pitr_fixtures import ...`)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from backups.models import Backup, BackupPolicy, WalArchive
from backups.wal import catalog as walcatalog
from backups.wal import walarchive
from portal import pg
from recovery.models import RecoveryRequest
from recovery.newcluster import NewCluster, postmaster_pid, stop
from tests.backups.conftest import archiving, local_location, run_now, switch_wal  # noqa: F401 (fixtures used by the tests)
from tests.clusters import RUN_AS
from tests.conftest import wait_for

SLOW_FETCH = Path(__file__).with_name("slow_fetch.py")


@pytest.fixture
def recovery_root(settings) -> Iterator[Path]:
    """RECOVERY_ROOT and RECOVERY_PASSFILE_DIR of the test's own; every server left in it is stopped."""
    root = Path(tempfile.mkdtemp(prefix="paws360-recovered-"))
    root.chmod(0o755)  # the cluster's OS user must reach its folder
    settings.RECOVERY_ROOT = root / "clusters"
    settings.RECOVERY_PASSFILE_DIR = root / "secrets"
    try:
        yield root
    finally:
        for pidfile in root.glob("clusters/*/data/postmaster.pid"):
            cluster = NewCluster(pidfile.parent.parent, RUN_AS)
            if postmaster_pid(cluster):
                stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def base_policy(archiving: WalArchive, tmp_path: Path) -> BackupPolicy:  # noqa: F811
    location = local_location("pitr-test", tmp_path / "backups")
    policy = BackupPolicy.objects.create(name="scratch base", kind=BackupPolicy.Kind.BASE, cluster=archiving.cluster,
                                         retention_days=7, schedule="0 1 * * *")
    policy.locations.add(location)
    return policy


def take_base_backup(policy: BackupPolicy) -> Backup:
    """A base backup through the portal (the task's own path), taken and verified."""
    backup = run_now(policy, actor="test")
    assert backup.status == Backup.Status.SUCCEEDED and backup.verification == Backup.Verification.VERIFIED, \
        backup.error or backup.verification_error
    return backup


def insert_marker(target: pg.Target, label: str) -> None:
    with pg.connect(target) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS markers (label text PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO markers (label) VALUES (%s)", [label])


def server_now(target: pg.Target) -> datetime:
    with pg.connect(target) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def archive_now(archive: WalArchive) -> None:
    """Close the current segment, wait until it is archived, and catalog it (what the minutely sample does)."""
    name = switch_wal(archive.cluster.target())
    wait_for(lambda: walarchive.stored(archive.folder, name), message=f"{name} archived")
    walcatalog.scan(archive)


def commit_times(archive: WalArchive) -> list[datetime]:
    return sorted(archive.segments.exclude(last_commit_at=None).values_list("last_commit_at", flat=True))


def mark_target(archive: WalArchive, policy: BackupPolicy, segments_between: int = 0) -> datetime:
    """A base backup through the portal, `segments_between` segments of WAL, then the row "before", the target
    one second later, the row "after" one second after that, archived and catalogued. Returns the target."""
    take_base_backup(policy)
    source = archive.cluster.target()
    for _ in range(segments_between):
        switch_wal(source, rows=1000)
    insert_marker(source, "before")
    time.sleep(1)
    target = server_now(source)
    time.sleep(1)
    insert_marker(source, "after")
    archive_now(archive)
    return target


@pytest.fixture
def marked_target(archiving: WalArchive, base_policy: BackupPolicy) -> datetime:  # noqa: F811
    return mark_target(archiving, base_policy)


def pitr_request(archive: WalArchive, target: datetime, **fields) -> RecoveryRequest:
    defaults = {"kind": RecoveryRequest.Kind.PITR, "cluster": archive.cluster, "target_time": target,
                "reason": "INC-2211: grades overwritten at 14:31"}
    return RecoveryRequest(**(defaults | fields))


def labels(target: pg.Target) -> set[str]:
    with pg.connect(target) as conn:
        return {row[0] for row in conn.execute("SELECT label FROM markers")}
