"""The .ready backlog under a two-minute pgbench write load on the sample database, and the achieved RPO
under light load with archive_timeout 60 and with synchronous streaming, in one run.

    .venv/bin/python bench/bench_wal_rpo.py [load_seconds] [light_seconds]

A scratch cluster with the sample database (scale 1) archives through the portal (configure_archiving, its
default compression).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import _django
from _django import portal_database

from backups.wal import setup, status, stream
from portal import pg
from portal.embedded import sample
from tests.clusters import ScratchCluster

WRITES = """\\set id random(1, 13500)
UPDATE paws360.students SET gpa = gpa WHERE id = :id;
INSERT INTO paws360.notifications (user_id, created_at, kind, body)
  SELECT user_id, now(), 'bench', repeat('x', 200) FROM paws360.students WHERE id = :id;
"""


def backlog_under_load(cluster: ScratchCluster, seconds: int) -> None:
    script = cluster.root / "writes.sql"
    script.write_text(WRITES)
    env = {**os.environ, **cluster.target("paws360").libpq_env()}
    load = subprocess.Popen([str(pg.bin_path("pgbench")), "-n", "-c", "2", "-T", str(seconds), "-f", str(script),
                             "paws360"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    worst, samples = 0, 0
    with pg.connect(cluster.target()) as conn:
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        while load.poll() is None:
            ready = conn.execute("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'").fetchone()
            worst, samples = max(worst, ready[0]), samples + 1
            time.sleep(0.5)
        written = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [start]).fetchone()[0]
    output = load.stdout.read().decode()
    tps = [line for line in output.splitlines() if line.startswith("tps")]
    if load.returncode != 0:
        print(output[-2000:])
    print(f"pgbench {seconds} s, 2 clients, writes on the sample: {tps[0] if tps else '?'}; "
          f"{int(written) / 2**20:.0f} MB of WAL; .ready backlog max {worst} (sampled {samples}x every 0.5 s)")


def light_load(target: pg.Target, stop: threading.Event) -> None:
    with pg.connect(target) as conn:
        while not stop.wait(1.0):
            conn.execute("UPDATE paws360.courses SET capacity = capacity WHERE id = 1")


def rpo_under_light_load(archive, seconds: int, label: str, interval: float) -> None:
    stop = threading.Event()
    writer = threading.Thread(target=light_load, args=(archive.cluster.target("paws360"), stop))
    writer.start()
    worst_s, worst_b, lags = 0.0, 0, []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            sample_row = status.take_sample(archive)
            worst_s = max(worst_s, sample_row.rpo_seconds or 0)
            worst_b = max(worst_b, sample_row.rpo_bytes or 0)
            if sample_row.stream_flush_lag is not None:
                lags.append(sample_row.stream_flush_lag)
            time.sleep(interval)
    finally:
        stop.set()
        writer.join()
    lag = f", flush lag max {max(lags):.3f} s" if lags else ""
    print(f"{label}: achieved RPO max {worst_s:.1f} s, max {worst_b} bytes at risk over {seconds} s{lag}")


def main(load_seconds: int, light_seconds: int) -> None:
    cluster = ScratchCluster().create({"fsync": "on"})
    cluster.start()
    try:
        with portal_database():
            managed = cluster.register("bench")
            archive = setup.configure(managed, folder=cluster.root / "wal", log=lambda line: None)
            sample.build(cluster.target("paws360"), 1)
            backlog_under_load(cluster, load_seconds)
            if not light_seconds:
                return
            rpo_under_light_load(archive, light_seconds, "archive_timeout 60", 1.0)
            stream.configure(archive, synchronous=True)
            stop = threading.Event()
            receiver = threading.Thread(target=stream.receive, args=(archive, stop, lambda line: None))
            receiver.start()
            time.sleep(3)
            try:
                rpo_under_light_load(archive, 30, "synchronous streaming", 0.5)
            finally:
                stream.configure(archive, synchronous=False)
                stop.set()
                receiver.join()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    _django  # noqa: B018
    main(*(args or [120, 180]))
