"""Point-in-time recovery through the portal against the same steps by hand, on the same base backup and WAL
archive, in one run.

    .venv/bin/python bench/bench_pitr.py [scale] [wal_megabytes] [rounds]

A scratch cluster (fsync on) holds the sample database at `scale` (17: about 1 GB), archives its WAL through
the portal (configure_archiving, zstd), takes a base backup through the portal (server-side zstd, verified),
then writes `wal_megabytes` of WAL (updates of paws360.notifications in many small transactions). The
target is the moment after the last of them.

By hand, what a DBA types: tar (zstd) of base.tar.zst and pg_wal.tar as postgres, restore_command (the same
fetch from the same archive), recovery_target_time, recovery_target_action = 'pause', port and socket in
postgresql.auto.conf, recovery.signal, `pg_ctl start`, poll pg_get_wal_replay_pause_state() until 'paused',
pg_promote(). The portal: a RecoveryRequest run by the task's own path (run_job -> perform); its time to
promotion is from its first step (the window check) to the end of its promote step, the same span as by hand
plus the portal's checks; its total adds verification and registration. Rounds alternate hand and portal.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _django import portal_database

from backups import pipeline, runs
from backups.kinds import base_extract
from backups.models import Backup, BackupPolicy, StorageLocation, WalArchive
from backups.storage import locations
from backups.wal import catalog as walcatalog
from backups.wal import setup, walarchive
from portal import pg
from portal.embedded import sample
from portal.jobs import run_job
from portal.models import ManagedCluster
from recovery import newcluster, passfile, pitr
from recovery.models import RecoveryRequest
from recovery.perform import perform
from tests.clusters import RUN_AS, ScratchCluster, free_port

POLL_SECONDS = 0.2  # the portal's replay poll interval too


def generate_wal(target: pg.Target, megabytes: int) -> int:
    """Update notifications in transactions of 20 000 rows until `megabytes` of WAL were written."""
    with pg.connect(target, statement_timeout_ms=0) as conn:
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        top = conn.execute("SELECT max(id) FROM paws360.notifications").fetchone()[0]
        low, written = 0, 0
        while written < megabytes * 2**20:
            conn.execute("UPDATE paws360.notifications SET is_read = NOT is_read WHERE id > %s AND id <= %s",
                         [low, low + 20_000])
            low = (low + 20_000) % top
            written = int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [start]).fetchone()[0])
    return written


def mark_target(archive: WalArchive) -> datetime:
    """The moment after the last update; one more commit a second later, archived, so PostgreSQL can stop."""
    target = archive.cluster.target("paws360")
    with pg.connect(target) as conn:
        time.sleep(0.5)
        moment = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        time.sleep(0.5)
        conn.execute("UPDATE paws360.courses SET capacity = capacity WHERE id = 1")
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    deadline = time.monotonic() + 600
    while walarchive.stored(archive.folder, segment) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{segment} was not archived")
        time.sleep(0.2)
    walcatalog.scan(archive)  # what the minutely sample does
    return moment


def as_postgres() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def by_hand(backup: Backup, archive: WalArchive, moment: datetime, root: Path) -> float:
    """Extract to promotion, the DBA's way. Returns the seconds it took."""
    data = root / "data"
    port = free_port()
    source = archive.cluster
    target = pg.Target("127.0.0.1", port, source.role, passfile=str(passfile.write(source, "hand", "127.0.0.1", port)))
    os.sync()  # every timed run starts with no dirty pages left by the one before
    started = time.perf_counter()
    phases: list[float] = []
    for folder in (root, data):
        folder.mkdir(mode=0o700)
        shutil.chown(folder, RUN_AS, RUN_AS)
    with open(backup.local_path / "base.tar.zst", "rb") as base:  # sudo -u postgres tar ... < base.tar.zst
        subprocess.run(["tar", "--zstd", "-x", "-C", str(data)], stdin=base, check=True, **as_postgres())
    with open(backup.local_path / "pg_wal.tar", "rb") as wal:
        subprocess.run(["tar", "-x", "-C", str(data / "pg_wal")], stdin=wal, check=True, **as_postgres())
    phases.append(time.perf_counter() - started)
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write(f"port = {port}\nunix_socket_directories = '{root}'\narchive_mode = off\n"
                   f"restore_command = '{setup.restore_command(archive)}'\n"
                   f"recovery_target_time = '{pitr.for_postgres(moment)}'\nrecovery_target_action = 'pause'\n")
    (data / "recovery.signal").touch()
    shutil.chown(data / "recovery.signal", RUN_AS, RUN_AS)
    pg.pg_ctl("start", data, run_as=RUN_AS, log_file=root / "server.log", timeout=3600)
    with pg.connect(target) as conn:
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
            time.sleep(POLL_SECONDS)
        phases.append(time.perf_counter() - started - sum(phases))
        conn.execute("SELECT pg_promote()")
    took = time.perf_counter() - started
    print(f"    by hand: extract {phases[0]:.1f} s, settings + start + replay to the pause {phases[1]:.1f} s, "
          f"promote {took - sum(phases):.1f} s")
    pg.pg_ctl("stop", data, run_as=RUN_AS)
    shutil.rmtree(root)
    return took


def compare_extraction(backup: Backup, work: Path, rounds: int = 3) -> None:
    """The extraction alone: the portal's (sha256 of every byte, tar as postgres fed by the portal) against
    tar reading the files itself, alternating."""
    raw, ours = [], []
    for round_ in range(rounds):
        folder = work / f"extract-{round_}"
        os.sync()
        started = time.perf_counter()
        for name, below in (("base.tar.zst", ""), ("pg_wal.tar", "pg_wal")):
            (folder / below).mkdir(parents=True, exist_ok=True)
            flags = ["--zstd"] if name.endswith(".zst") else []
            subprocess.run(["tar", *flags, "-x", "-f", str(backup.local_path / name), "-C", str(folder / below)],
                           check=True)
        raw.append(time.perf_counter() - started)
        shutil.rmtree(folder)
        cluster = newcluster.NewCluster(work / "recovered" / f"extract-{round_}", RUN_AS)
        newcluster.create_folders(cluster)
        os.sync()
        started = time.perf_counter()
        base_extract.extract(backup, cluster.data, os_user=cluster.os_user, on_bytes=lambda done, total: None)
        ours.append(time.perf_counter() - started)
        shutil.rmtree(cluster.root)
    print(f"extraction alone: tar {min(raw):.1f} s, portal (sha256 checked, tar as postgres) {min(ours):.1f} s")


def through_portal(managed: ManagedCluster, moment: datetime, name: str) -> tuple[float, float, dict[str, float]]:
    """(seconds to promotion, seconds in all, seconds per step) of a recovery request run by the portal."""
    request = RecoveryRequest(kind=RecoveryRequest.Kind.PITR, cluster=managed, target_time=moment,
                              destination_name=name, reason="bench", status=RecoveryRequest.Status.QUEUED)
    request.full_clean()
    request.save()
    os.sync()
    started = time.perf_counter()
    run_job(RecoveryRequest, request.pk, perform)
    total = time.perf_counter() - started
    request.refresh_from_db()
    assert request.status == RecoveryRequest.Status.SUCCEEDED, f"{request.error}\n{request.log[-3000:]}"
    assert request.verification["last_replayed_commit"] < pitr.utc(moment)
    steps = list(request.steps.order_by("position"))
    promoted = next(s for s in steps if s.name == pitr.STEP_PROMOTE).finished
    to_promotion = (promoted - steps[0].started).total_seconds()
    per_step = {s.name: s.duration.total_seconds() for s in steps}
    print("    portal: " + "; ".join(f"{name.split(' ')[0].lower()} {secs:.1f} s" for name, secs in per_step.items()))
    print("    " + steps[0].log.strip().replace("\n", "\n    "))
    recovered = request.result_cluster
    newcluster.remove(newcluster.NewCluster(Path(recovered.data_directory).parent, RUN_AS))
    passfile.remove(recovered.name)
    recovered.databases.all().delete()
    recovered.delete()
    return to_promotion, total, per_step


def prepare(cluster: ScratchCluster, work: Path, scale: float, wal_megabytes: int) -> tuple[WalArchive, Backup]:
    started = time.perf_counter()
    sample.build(cluster.target("paws360"), scale)
    print(f"sample at scale {scale} built in {time.perf_counter() - started:.0f} s")
    managed = cluster.register("bench")
    archive = setup.configure(managed, folder=cluster.root / "wal", log=lambda line: None)
    location = StorageLocation.objects.create(name="bench", path=str(work / "backups"))
    locations.initialise(location, actor="bench")
    policy = BackupPolicy.objects.create(name="bench base", kind="base", cluster=managed, retention_days=7)
    policy.locations.add(location)
    backup = runs.create(policy, actor="bench", via="bench")
    run_job(Backup, backup.pk, pipeline.perform)
    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.VERIFIED, backup.error or backup.verification_error
    print(f"base backup {backup.size_bytes / 2**20:.0f} MB (server-side zstd), verified")
    started = time.perf_counter()
    written = generate_wal(cluster.target("paws360"), wal_megabytes)
    print(f"{written / 2**20:.0f} MB of WAL written in {time.perf_counter() - started:.0f} s")
    return archive, backup


def main(scale: float, wal_megabytes: int, rounds: int) -> None:
    from django.conf import settings

    cluster = ScratchCluster().create({"fsync": "on", "max_wal_size": "1GB"})
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="paws360-bench-pitr-", dir="/var/tmp"))
    work.chmod(0o755)
    settings.RECOVERY_ROOT, settings.RECOVERY_PASSFILE_DIR = work / "recovered", work / "secrets"
    try:
        with portal_database():
            archive, backup = prepare(cluster, work, scale, wal_megabytes)
            moment = mark_target(archive)
            segments = archive.segments.filter(segno__gte=walarchive.parse_segment(
                backup.start_wal, archive.segment_size)[1]).count()
            print(f"target {pitr.utc(moment)}; {segments} archived segments after the backup's start")
            hand, portal = [], []
            compare_extraction(backup, work, rounds=max(rounds, 3))
            for round_ in range(rounds):
                hand.append(by_hand(backup, archive, moment, work / f"hand-{round_}"))
                # The minutely WAL sample's job (autovacuum after the updates keeps archiving segments): a running
                # portal's catalog is at most a minute behind; the recovery's own scan records what is left.
                caught_up = walcatalog.scan(archive).new
                portal.append(through_portal(archive.cluster, moment, f"bench-pitr-{round_}"))
                print(f"  round {round_ + 1}: by hand {hand[-1]:.1f} s; portal {portal[-1][0]:.1f} s to promotion, "
                      f"{portal[-1][1]:.1f} s in all ({caught_up} segments catalogued before it, untimed)")
            best_hand, best = min(hand), min(portal)
            print("portal steps (best round): " + "; ".join(f"{name}: {secs:.1f} s" for name, secs in best[2].items()))
            print(f"extract to promotion: by hand {best_hand:.1f} s, portal {best[0]:.1f} s, "
                  f"ratio {best[0] / best_hand:.3f} (portal with verification and registration {best[1]:.1f} s)")
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(float(arguments[0]) if arguments else 17, int(arguments[1]) if len(arguments) > 1 else 360,
         int(arguments[2]) if len(arguments) > 2 else 2)
