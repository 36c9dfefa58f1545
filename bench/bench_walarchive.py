"""The archive command per 16 MB segment against `cp` plus `sync` of the same file, in one run.

    .venv/bin/python bench/bench_walarchive.py [segments]

Real segments: a scratch cluster builds the sample database (scale 4) with a plain `cp` archive_command, so
its archive holds full segments of real WAL. Each segment is then archived into a folder on the same disk
four ways, each a fresh process as PostgreSQL would start it: `cp SRC DST && sync DST`, walarchive.py push
(no compression), push --compress=zstd and push --compress=auto (the default: full segments as they are).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _django  # noqa: F401

from backups.wal import walarchive
from portal import pg
from portal.embedded import sample
from tests.clusters import ScratchCluster

PROGRAM = str(Path(walarchive.__file__))


def real_segments(count: int, into: Path) -> tuple[int, list[Path]]:
    collect = into / "collected"
    collect.mkdir()
    cluster = ScratchCluster().create({"archive_mode": "on", "archive_command": f"'cp %p {collect}/%f'"})
    collect.chmod(0o777)
    cluster.start()
    try:
        with pg.connect(cluster.target()) as conn:
            sysid = int(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
        sample.build(cluster.target("paws360"), 4)
        with pg.connect(cluster.target()) as conn:
            conn.execute("SELECT pg_switch_wal()")
        time.sleep(2)
    finally:
        cluster.destroy()
    names = sorted(p for p in collect.iterdir() if walarchive.kind_of(p.name) == "segment")
    full = [p for p in names if p.stat().st_size == 16 * 2**20][1:count + 1]
    return sysid, full


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


def main(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="paws360-bench-wal-", dir="/var/tmp"))
    work.chmod(0o755)  # the cluster (postgres) writes into it
    try:
        sysid, segments = real_segments(count, work)
        results: dict[str, list[float]] = {"cp + sync": [], "push": [], "push zstd": [], "push auto": []}
        sizes = []
        for mode in results:
            dest = work / mode.replace(" ", "_").replace("+", "")
            dest.mkdir()
            (dest / walarchive.MARKER).write_text(f"{sysid}\n")
        for segment in segments:  # interleaved, so that the three see the same conditions
            for mode, times in results.items():
                dest = work / mode.replace(" ", "_").replace("+", "")
                if mode == "cp + sync":
                    argv = ["sh", "-c", f"cp {segment} {dest}/{segment.name} && sync {dest}/{segment.name}"]
                else:
                    argv = ["/usr/bin/python3", "-I", "-S", PROGRAM, "push", str(segment), segment.name, str(dest)]
                    argv += {"push zstd": ["--compress=zstd"], "push auto": ["--compress=auto"]}.get(mode, [])
                times.append(timed(argv))
            sizes.append((work / "push_zstd" / (segment.name + ".zst")).stat().st_size)
        base = statistics.median(results["cp + sync"])
        print(f"{len(segments)} real 16 MB segments (sample database build), each archived by a new process:")
        for mode, times in results.items():
            med = statistics.median(times)
            print(f"  {mode:10s} median {med * 1000:6.1f} ms  mean {statistics.mean(times) * 1000:6.1f} ms  "
                  f"overhead vs cp+sync {1000 * (med - base):+6.1f} ms  ratio {med / base:.2f}")
        print(f"  zstd: {statistics.mean(sizes) / 2**20:.2f} MB per segment on average "
              f"({16 * 2**20 / statistics.mean(sizes):.1f}x smaller)")
        compressed = len(list((work / "push_auto").glob("*.zst")))
        print(f"  auto: {compressed} of {len(segments)} segments compressed (a switch ended them early)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
