"""Fixtures of the WAL archive and base backup tests: scratch clusters that archive for real."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backups import walsetup
from backups.models import WalArchive
from portal import pg
from tests.clusters import ScratchCluster

ARCHIVING_OFF = {"archive_mode": "on", "archive_command": "'/bin/true'"}


@pytest.fixture
def archiving(scratch_cluster: ScratchCluster, db) -> WalArchive:
    """The scratch cluster registered as managed and archiving (zstd) into a folder of its own, proved."""
    cluster = scratch_cluster.register()
    return walsetup.configure(cluster, folder=scratch_cluster.root / "wal", log=lambda line: None)


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
