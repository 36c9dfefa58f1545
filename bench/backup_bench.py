"""The portal's full backup against the raw PostgreSQL tools, side by side in one run.

    .venv/bin/python bench/backup_bench.py --scale 17 [--repeat 3] [--drop]

1. The portal's backup (snapshot, row counts, globals, sha256, fsync, rename) against raw `pg_dump` with the
   same options, for the default (directory, 2 jobs, gzip 1) and the custom format: wall-time ratio.
2. The worker's peak resident memory while backing up the ~1 GB sample and the ~10 MB one: flat.
3. The portal's default against the seed's `pg_dump -Fc --compress=9`: wall time and size.
4. The portal's verification (checksum, restore into a scratch database, row counts, drop) against raw
   `createdb` + `pg_restore -j2` + `dropdb` of the same backup, both on the embedded scratch cluster (where
   verification restores), pg_restore with the same options for a scratch cluster (`--no-owner`...).

Runs against a portal database of its own (`bench_portal`) and a sample database `bench_paws360_<scale>`,
built if missing (and dropped with --drop). Medians of --repeat runs, alternating the two sides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchenv

from backups.models import BackupPolicy
from backups.restore import ONTO_SCRATCH
from portal import embedded, pg
from portal.embedded import sample
from portal.models import ManagedCluster, ManagedDatabase

HERE = Path(__file__).resolve().parent


def timed(argv: list[str], dbname: str, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env or benchenv.libpq_env(dbname), check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def portal_run(policy: BackupPolicy, root: Path, verify: bool = False) -> dict:
    result = child([str(policy.pk), *(["--verify"] if verify else [])], root)
    if result["status"] != "succeeded":
        raise SystemExit(f"the portal's backup failed: {result['error']}")
    return result


def child(args: list[str], root: Path) -> dict:
    env = {**benchenv.os.environ, "BACKUP_ROOT": str(root)}
    argv = [sys.executable, str(HERE / "portal_run.py"), *args]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def raw_dump(args: list[str], dbname: str, out: Path) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    out.unlink(missing_ok=True)
    seconds = timed([benchenv.bin_path("pg_dump"), *args, f"--file={out}", f"--dbname={dbname}"], dbname)
    return seconds, size_of(out)


def raw_restore(path: Path, scratch: ManagedCluster, jobs: int) -> float:
    name, env = "bench_raw_restore", pg.child_env(scratch.target())
    started = time.monotonic()
    timed([benchenv.bin_path("createdb"), "--template=template0", name], name, env)
    timed([benchenv.bin_path("pg_restore"), "--exit-on-error", *ONTO_SCRATCH, f"--jobs={jobs}", f"--dbname={name}",
           str(path)], name, env)
    timed([benchenv.bin_path("dropdb"), name], name, env)
    return time.monotonic() - started


def policy_for(database: ManagedDatabase, name: str, **options: object) -> BackupPolicy:
    policy, _ = BackupPolicy.objects.update_or_create(
        name=name, defaults={"kind": "logical", "cluster": database.cluster, "database": database,
                             "enabled": False, **options})
    return policy


def clear(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()


def alternating(round_: int, *sides: Callable[[], object]) -> None:
    """Run the sides, in turn first from one round to the next, so that neither always follows the other."""
    for side in sides if round_ % 2 == 0 else reversed(sides):
        side()


def median(values: list[float]) -> float:
    return statistics.median(values)


def compare_dump(label: str, policy: BackupPolicy, raw_args: list[str], dbname: str, root: Path, repeat: int,
                 work: Path) -> dict:
    portal, raw = [], []
    for round_ in range(repeat):
        clear(root)
        alternating(round_, lambda: raw.append(raw_dump(raw_args, dbname, work / "raw")),
                    lambda: portal.append(portal_run(policy, root)))
    p_time, r_time = median([p["seconds"] for p in portal]), median([r[0] for r in raw])
    row = {"label": label, "portal_s": p_time, "raw_s": r_time, "ratio": p_time / r_time,
           "portal_size": portal[-1]["size"], "raw_size": raw[-1][1],
           "rss_peak_mb": max(p["rss_peak_mb"] for p in portal), "rss_before_mb": portal[-1]["rss_before_mb"],
           "portal_all": [round(p["seconds"], 2) for p in portal], "raw_all": [round(r[0], 2) for r in raw]}
    best = min(p["seconds"] for p in portal) / min(r[0] for r in raw)
    print(f"{label:<34} portal {p_time:7.2f}s  raw pg_dump {r_time:7.2f}s  ratio {row['ratio']:.3f} "
          f"(best of each: {best:.3f})  (portal {row['portal_all']}, raw {row['raw_all']})  "
          f"portal peak RSS {row['rss_peak_mb']:.0f} MB")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=17)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drop", action="store_true", help="drop the sample databases afterwards")
    args = parser.parse_args()

    benchenv.portal_database()
    cluster, scratch = embedded.register(), embedded.register_scratch()
    dbname, tiny = f"bench_paws360_{str(args.scale).replace('.', '_')}", "bench_paws360_0_02"
    for name, scale in ((dbname, args.scale), (tiny, 0.02)):
        built = benchenv.sample_database(name, scale)
        built_note = f", built in {built:.0f}s" if built else ""
        print(f"sample {name}: {sample.size_pretty(embedded.target(name))}{built_note}")
    database = ManagedDatabase.objects.get_or_create(cluster=cluster, name=dbname)[0]
    tiny_database = ManagedDatabase.objects.get_or_create(cluster=cluster, name=tiny)[0]
    work = Path(tempfile.mkdtemp(prefix="paws360-bench-"))
    root = work / "portal"
    root.mkdir()
    try:
        default = policy_for(database, "bench default")  # the model's defaults: directory, 2 jobs, gzip 1
        custom = policy_for(database, "bench custom gzip 1", dump_format="custom", compression=1)
        print(f"\n== 1. the portal's backup against raw pg_dump, same options (median of {args.repeat})")
        rows = [compare_dump("default: -Fd -j2 --compress=1", default, ["-Fd", "-j2", "--compress=1"], dbname, root,
                             args.repeat, work),
                compare_dump("custom: -Fc --compress=1", custom, ["-Fc", "--compress=1"], dbname, root,
                             args.repeat, work)]

        print("\n== 2. the worker's peak resident memory, small and large database (custom format streams "
              "through the worker)")
        tiny_policy = policy_for(tiny_database, "bench tiny custom", dump_format="custom", compression=1)
        clear(root)
        small = portal_run(tiny_policy, root)
        print(f"~10 MB database: peak RSS {small['rss_peak_mb']:.0f} MB; "
              f"~1 GB database: {max(r['rss_peak_mb'] for r in rows):.0f} MB "
              f"(Django loaded, before the backup: {small['rss_before_mb']:.0f} MB)")

        print("\n== 3. the portal's default against the seed's pg_dump -Fc --compress=9")
        seed = [raw_dump(["-Fc", "--compress=9"], dbname, work / "seed.dump") for _ in range(max(1, args.repeat - 2))]
        seed_s, seed_size = median([s[0] for s in seed]), seed[-1][1]
        d = rows[0]
        print(f"seed   -Fc --compress=9       {seed_s:7.2f}s  {seed_size / 1e6:7.1f} MB")
        print(f"portal default -Fd -j2 -Z1   {d['portal_s']:7.2f}s  {d['portal_size'] / 1e6:7.1f} MB")
        print(f"=> {seed_s / d['portal_s']:.1f}x faster, {d['portal_size'] / seed_size:.2f}x the size")

        print("\n== 4. verification (checksum, restore, row counts, drop) against raw createdb + pg_restore -j2 + "
              "dropdb")
        clear(root)
        backup = portal_run(default, root)
        checks, raws = [], []
        for round_ in range(args.repeat):
            alternating(round_, lambda: checks.append(child(["--verify-only", str(backup["backup"])], root)),
                        lambda: raws.append(raw_restore(Path(backup["path"]), scratch, jobs=2)))
        p_s, r_s = median([c["verify_seconds"] for c in checks]), median(raws)
        print(f"portal verification {p_s:7.2f}s (verified: {all(c['verified'] for c in checks)})  "
              f"raw restore {r_s:7.2f}s  ratio {p_s / r_s:.3f}  (portal "
              f"{[round(c['verify_seconds'], 2) for c in checks]}, raw {[round(r, 2) for r in raws]})  "
              f"peak RSS while verifying {max(c['rss_peak_with_verify_mb'] for c in checks):.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.drop:
            for name in (dbname, tiny):
                sample.drop(embedded.target(name))


if __name__ == "__main__":
    main()
