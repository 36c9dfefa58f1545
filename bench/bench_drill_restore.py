"""A logical drill's restore through the portal against raw `pg_restore` with the same jobs on the same backup.

    PORTAL_VAR=/work/main/var TEST_DATABASE_NAME=<yours> .venv/bin/python bench/bench_drill_restore.py [--scale 17]

Builds the sample at the scale (unless it is there), takes one full logical backup through the portal's pipeline
(directory format, 2 jobs, gzip 1: the policy defaults), then, interleaved (raw first in odd rounds, the drill
first in even ones), `rounds` times each, both into the embedded scratch cluster (where drills restore):
- raw: `createdb` + `pg_restore --jobs=2 --exit-on-error` (with the drill's options for a scratch cluster:
  `--no-owner`...) of that backup folder into a new database;
- portal: a drill (recovery/logical_drill.py) through `run_job`, as the worker runs it; its restore step (create
  the scratch database + pg_restore with progress and logging) is timed from the step's own start and end, and
  the whole drill (checksum, restore, row counts, pg_amcheck, drop) is reported beside it.
Prints the figures and the ratio portal / raw (best and median). Drops everything it made.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import _django
from django.conf import settings

from backups import pipeline
from backups.models import Backup, BackupPolicy
from backups.restore import ONTO_SCRATCH
from portal import embedded, pg
from portal.embedded import sample
from portal.jobs import run_job
from portal.models import ManagedCluster, ManagedDatabase
from recovery import logical_drill
from recovery.models import DrillSchedule, RecoveryRequest
from recovery.perform import perform

SAMPLE = "paws360_bench_drill"


def raw_restore(scratch: ManagedCluster, path: Path, jobs: int) -> float:
    target = scratch.target(f"{SAMPLE}_raw")
    started = time.monotonic()
    subprocess.run([pg.bin_path("createdb"), "--template=template0", target.dbname], env=pg.child_env(target),
                   check=True)
    subprocess.run([pg.bin_path("pg_restore"), "--exit-on-error", *ONTO_SCRATCH, f"--jobs={jobs}",
                    f"--dbname={target.dbname}", str(path)], env=pg.child_env(target), check=True)
    took = time.monotonic() - started
    sample.drop(target)
    return took


def drill(database: ManagedDatabase, backup: Backup) -> tuple[float, float, RecoveryRequest]:
    request = RecoveryRequest.objects.create(kind=RecoveryRequest.Kind.DRILL, drill_kind=DrillSchedule.Kind.LOGICAL,
                                             cluster=database.cluster, database=database, backup=backup,
                                             reason="benchmark", triggered_by="bench")
    started = time.monotonic()
    run_job(RecoveryRequest, request.pk, perform)
    total = time.monotonic() - started
    request.refresh_from_db()
    assert request.status == "succeeded", request.error
    step = request.steps.get(name=logical_drill.RESTORE)
    return (step.finished - step.started).total_seconds(), total, request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=17)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep-sample", action="store_true")
    args = parser.parse_args()
    target = embedded.target(SAMPLE)
    if not sample.exists(target):
        started = time.monotonic()
        sample.build(target, args.scale)
        print(f"sample built at scale {args.scale} in {time.monotonic() - started:.0f} s")
    with _django.portal_database(), tempfile.TemporaryDirectory(prefix="bench-drill-") as root:
        settings.BACKUP_ROOT = Path(root)
        try:
            run(args, Path(root))
        finally:
            if not args.keep_sample:
                sample.drop(target)


def run(args: argparse.Namespace, root: Path) -> None:
    cluster, scratch = embedded.register(), embedded.register_scratch()
    database = ManagedDatabase.objects.create(cluster=cluster, name=SAMPLE)
    policy = BackupPolicy.objects.create(name="bench", kind="logical", cluster=cluster, database=database)
    backup = Backup.objects.create(policy=policy, kind=policy.kind, cluster=cluster, database=database,
                                   triggered_by="bench")
    started = time.monotonic()
    run_job(Backup, backup.pk, pipeline.taker(policy.kind))  # the backup alone, without its verification
    backup.refresh_from_db()
    assert backup.status == "succeeded", backup.error
    # The drill restores and counts it anyway: marked verified here rather than restored one more time.
    Backup.objects.filter(pk=backup.pk).update(verification=Backup.Verification.VERIFIED)
    backup.refresh_from_db()
    print(f"backup #{backup.pk}: {backup.size_bytes / 1e6:.0f} MB {backup.format}, "
          f"{sum(backup.manifest['tables'].values()):,} rows, in {time.monotonic() - started:.1f} s")

    raw, portal, whole = [], [], []
    for round_ in range(1, args.rounds + 1):
        if round_ % 2:  # which one goes first alternates: each inherits the other's checkpoint and archiving
            raw.append(raw_restore(scratch, backup.local_path, policy.jobs))
        restore, total, request = drill(database, backup)
        portal.append(restore)
        whole.append(total)
        if not round_ % 2:
            raw.append(raw_restore(scratch, backup.local_path, policy.jobs))
        steps = ", ".join(f"{s.name.split(' ')[0].lower()} {(s.finished - s.started).total_seconds():.1f}"
                          for s in request.steps.all())
        print(f"round {round_}: raw pg_restore -j{policy.jobs} {raw[-1]:.2f} s | drill restore step "
              f"{restore:.2f} s | whole drill {total:.1f} s ({steps}); RTO {request.rto_seconds:.1f} s")
    print(f"ratio drill restore / raw pg_restore: best {min(portal) / min(raw):.3f}, "
          f"median {statistics.median(portal) / statistics.median(raw):.3f}")


if __name__ == "__main__":
    main()
