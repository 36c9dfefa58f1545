"""A base backup through the portal against raw pg_basebackup with the same options, and the compression
choices, on the ~1 GB sample, in one run.

    .venv/bin/python bench/bench_basebackup.py [scale]

A scratch cluster holds the sample database at `scale` (17: about 1 GB). Raw pg_basebackup runs with the
portal's own option list (pg_basebackup_args); the portal's run is backups.tasks' path (run_job ->
take_base_backup), whose verification (extract + pg_verifybackup) is timed apart.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from _django import portal_database

from backups import pipeline, runs
from backups.kinds import base as basebackup
from backups.models import Backup, BackupPolicy, StorageLocation
from backups.storage import locations
from portal import pg
from portal.embedded import sample
from portal.jobs import run_job
from tests.clusters import ScratchCluster


def raw(cluster: ScratchCluster, args: list[str], into: Path) -> tuple[float, int]:
    started = time.perf_counter()
    pg.run("pg_basebackup", args, target=cluster.target(), timeout=3600)
    took = time.perf_counter() - started
    size = sum(p.stat().st_size for p in into.rglob("*") if p.is_file())
    shutil.rmtree(into)
    return took, size


def main(scale: float) -> None:
    cluster = ScratchCluster().create({"max_wal_senders": "10"})
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="paws360-bench-base-", dir="/var/tmp"))
    try:
        with portal_database():
            started = time.perf_counter()
            sample.build(cluster.target("paws360"), scale)
            with pg.connect(cluster.target()) as conn:
                size = conn.execute("SELECT sum(pg_database_size(oid)) FROM pg_database").fetchone()[0]
            built = time.perf_counter() - started
            print(f"sample at scale {scale}: cluster {size / 2**20:.0f} MB, built in {built:.0f} s")
            managed = cluster.register("bench")
            location = StorageLocation.objects.create(name="bench", path=str(work / "portal"))
            locations.initialise(location, actor="bench")
            policy = BackupPolicy.objects.create(name="bench base", kind="base", cluster=managed, retention_days=7)
            policy.locations.add(location)
            for label, option in (("client-gzip (level 6)", "client-gzip:6"), ("none", ""),
                                  ("server-zstd level 1, 2 workers", "server-zstd:level=1,workers=2")):
                folder = work / "raw"
                args = [a for a in basebackup.pg_basebackup_args(policy, folder, "bench")
                        if not a.startswith("--compress")]
                args += [f"--compress={option}"] if option else []
                took, size = raw(cluster, args, folder)
                print(f"  raw pg_basebackup, {label:32s} {took:6.1f} s  {size / 2**20:7.0f} MB")
            raw_times = []
            portal_times = []
            for _ in range(2):  # alternate, so both see the same conditions
                folder = work / "raw"
                took, _ = raw(cluster, basebackup.pg_basebackup_args(policy, folder, "bench"), folder)
                raw_times.append(took)
                backup = runs.create(policy, actor="bench", via="bench")
                started = time.perf_counter()
                run_job(Backup, backup.pk, pipeline.perform)
                total = time.perf_counter() - started
                backup.refresh_from_db()
                assert backup.status == "succeeded", backup.error
                portal_times.append((total - backup.verification_seconds, backup.verification_seconds,
                                     backup.size_bytes))
                shutil.rmtree(backup.local_path)
            raw_best = min(raw_times)
            portal_best = min(t for t, _, _ in portal_times)
            print(f"  same options (server-zstd level 1, 2 workers): raw {raw_best:.1f} s, portal {portal_best:.1f} s "
                  f"(+ verification {portal_times[0][1]:.1f} s), ratio {portal_best / raw_best:.3f}; "
                  f"{portal_times[0][2] / 2**20:.0f} MB")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 17)
