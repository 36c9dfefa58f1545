"""Verification off production: a backup of the 68 MB sample, verified on the scratch cluster. Production's
pg_stat_database shows no new database at any moment of the verification (sampled from a thread while it runs,
before it starts and after it ends), and production's WAL moves by less than 1 MB across it (a verification on
production wrote about 75 MB there: template0 copied into a new database, then the restore).

Production here is a cluster of its own holding the sample at scale 1 (the `larger_sample` of the embedded cluster,
built on a server nothing else uses): the suite's other tests create databases and write WAL on the embedded
cluster, and may do so at the same moment when the suite runs in parallel."""

from __future__ import annotations

import threading
from types import TracebackType

import pytest

from backups import pipeline, runs, verify
from backups.models import Backup, BackupPolicy
from portal import pg
from portal.embedded import sample
from portal.jobs import reporting, run_job
from portal.models import AuditEvent, ManagedDatabase
from tests.clusters import ScratchCluster

pytestmark = pytest.mark.django_db(transaction=True)
MB = 1024 * 1024


@pytest.fixture
def production(scratch_cluster: ScratchCluster, backup_root) -> ManagedDatabase:
    """The sample (scale 1, 68 MB) on a production cluster of its own, registered. Frozen and checkpointed first:
    nothing left for autovacuum or hint bits to write to its WAL later."""
    cluster = scratch_cluster.register("production")
    target = scratch_cluster.target("paws360")
    sample.build(target, 1)
    with pg.connect(target, statement_timeout_ms=0) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute("CHECKPOINT")
    return ManagedDatabase.objects.create(cluster=cluster, name="paws360")


class DatabaseWatch:
    """Production's databases as pg_stat_database lists them, sampled on a thread of its own from before the block
    starts (entering waits for the first sample) until after it ends (leaving waits for one more)."""

    def __init__(self, target: pg.Target) -> None:
        self.target, self.seen, self.samples = target, set(), 0
        self._first, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with pg.connect(self.target, purpose="test-watch") as conn:
            while True:
                stopping = self._stop.is_set()
                rows = conn.execute("SELECT datname FROM pg_stat_database WHERE datname IS NOT NULL").fetchall()
                self.seen |= {name for (name,) in rows}
                self.samples += 1
                self._first.set()
                if stopping:
                    return
                self._stop.wait(0.01)

    def __enter__(self) -> DatabaseWatch:
        self._thread.start()
        assert self._first.wait(30), "the watch took no first sample"
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(60)


def databases(target: pg.Target) -> set[str]:
    with pg.connect(target) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def wal_position(target: pg.Target) -> str:
    with pg.connect(target) as conn:
        return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])


def wal_since(target: pg.Target, position: str) -> int:
    with pg.connect(target) as conn:
        return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [position]).fetchone()[0])


def taken(policy: BackupPolicy) -> Backup:
    """A backup of `policy` taken as the worker takes it, not yet verified."""
    backup = runs.create(policy, actor="tester", via="test")
    run_job(Backup, backup.pk, pipeline.taker(policy.kind))
    backup.refresh_from_db()
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    return backup


def test_a_verification_creates_no_database_on_production_and_writes_no_wal_there(production, embedded_scratch):
    policy = BackupPolicy.objects.create(name="production full", kind=BackupPolicy.Kind.LOGICAL,
                                         cluster=production.cluster, database=production)
    backup = taken(policy)
    server = production.cluster.target()
    before, position = databases(server), wal_position(server)

    with DatabaseWatch(server) as watch, reporting(backup) as reporter:
        verified = verify.verify(backup, reporter)

    backup.refresh_from_db()
    assert verified and backup.verification == Backup.Verification.VERIFIED, backup.verification_error
    assert watch.samples >= 2 and watch.seen == before == databases(server), \
        f"production showed a new database during the run: {sorted(watch.seen - before)}"
    moved = wal_since(server, position)
    assert moved < MB, f"production's WAL moved by {moved} bytes"
    scratch_name = verify.scratch_prefix(backup)
    assert f"restoring into scratch database {scratch_name}" in backup.log
    assert f"on the scratch cluster {embedded_scratch.name}" in backup.log
    assert not [name for name in databases(embedded_scratch.target()) if name.startswith(scratch_name)], \
        "the scratch database is dropped"
    event = AuditEvent.objects.get(action="backup.verify", object_id=str(backup.pk))
    assert event.outcome == "success" and "every count matches" in event.details["summary"]
