"""Which pg_dump format, jobs and gzip level to default to: raw pg_dump on the sample, time and size for each.

    .venv/bin/python bench/dump_options.py --scale 17

PostgreSQL 15's pg_dump compresses with gzip levels 0-9 only (lz4 and zstd came with 16). The output ratio
(output bytes per byte of table data) of each level is what `backups/kinds/logical.py` OUTPUT_RATIO starts the
progress estimate from.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import benchenv
from backup_bench import raw_dump

from backups.kinds.logical import user_tables
from portal import embedded, pg

OPTIONS = [
    ["-Fc", "--compress=9"],  # the seed's
    ["-Fc", "--compress=6"],
    ["-Fc", "--compress=1"],
    ["-Fc", "--compress=0"],
    ["-Fd", "-j2", "--compress=9"],
    ["-Fd", "-j2", "--compress=6"],
    ["-Fd", "-j2", "--compress=3"],
    ["-Fd", "-j2", "--compress=1"],
    ["-Fd", "-j2", "--compress=0"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=17)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    dbname = f"bench_paws360_{str(args.scale).replace('.', '_')}"
    benchenv.sample_database(dbname, args.scale)
    with pg.connect(embedded.target(dbname)) as conn:
        table_bytes = sum(t.size for t in user_tables(conn))
    work = Path(tempfile.mkdtemp(prefix="paws360-bench-"))
    seed_s = None
    print(f"{dbname}: {table_bytes / 1e6:.0f} MB of table data; median of {args.repeat} runs")
    print(f"{'options':<28} {'seconds':>8} {'MB':>8} {'ratio':>6} {'vs seed':>8}")
    try:
        for options in OPTIONS:
            runs = [raw_dump(options, dbname, work / "out") for _ in range(args.repeat)]
            seconds, size = statistics.median(r[0] for r in runs), runs[-1][1]
            seed_s = seed_s or seconds
            print(f"{' '.join(options):<28} {seconds:8.2f} {size / 1e6:8.1f} {size / table_bytes:6.3f} "
                  f"{seed_s / seconds:7.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
