"""Building the recovered cluster, shared by a recovery and a drill: the base backup extracted into a new data
directory (the next good one when it is found damaged), the recovery settings, the replay up to the target."""


from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from backups import leases
from backups.kinds import base_extract
from backups.models import Backup, WalArchive
from backups.verify import mark_damaged
from backups.wal import setup, walarchive
from portal import audit, pg
from portal.jobs import Reporter
from portal.models import ManagedCluster
from recovery import newcluster, passfile, replay
from recovery.approvals import Refused
from recovery.models import RecoveryRequest
from recovery.newcluster import NewCluster
from recovery.pitr.plan import STEP_BACKUP, STEP_EXTRACT, STEP_PROMOTE, STEP_REPLAY, STEP_SETTINGS
from recovery.pitr.target import check_backup, choose_backup, default_destination_name, free_port, replay_bound
from recovery.pitr.times import for_postgres, utc
from recovery.steps import Steps


@dataclass
class Build:
    request: RecoveryRequest
    steps: Steps
    reporter: Reporter
    target_time: datetime
    archive: WalArchive
    backup: Backup | None = None
    cluster: NewCluster | None = None
    port: int = 0
    passfile: Path | None = None
    reached: replay.Reached | None = None
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def source(self) -> ManagedCluster:
        return self.request.cluster

    def target(self, dbname: str = "postgres") -> pg.Target:
        return pg.Target("127.0.0.1", self.port, self.source.role, dbname,
                         passfile=str(self.passfile or ""), major=self.source.major)

    def say(self, step_name: str) -> Callable[[str], None]:
        return self.steps.logger(step_name)


def name_of(request: RecoveryRequest) -> str:
    """The destination's name, chosen now if the request came without one (the one-destination constraint)."""
    if not request.destination_name:
        request.destination_name = default_destination_name(request.cluster, request.target_time)
        try:
            RecoveryRequest.objects.filter(pk=request.pk).update(destination_name=request.destination_name)
        except IntegrityError as exc:
            raise Refused(f"another recovery is already restoring into {request.destination_name!r}") from exc
    return request.destination_name


def restore(build: Build) -> None:
    """Base backup → new data directory → recovery settings → replay to the target → promote. With the choice left
    to the portal, a backup found damaged while it is extracted is marked so, and the next one that reaches the
    target is extracted instead."""
    request, steps = build.request, build.steps
    by_hand = bool(request.backup_id)
    with steps.run(STEP_BACKUP):
        say = build.say(STEP_BACKUP)
        if by_hand:
            build.backup = Backup.objects.get(pk=request.backup_id)
            check_backup(build.backup, build.source, build.target_time)
        else:
            build.backup = choose_backup(build.source, build.target_time, say)
        say(describe(build.backup))
        RecoveryRequest.objects.filter(pk=request.pk).update(backup=build.backup)
    with contextlib.ExitStack() as lease:
        lease.enter_context(leases.hold(build.backup, f"recovery:{request.pk}"))
        with steps.run(STEP_EXTRACT):
            while not extracted(build, by_hand):
                lease.close()  # the damaged backup's lease; the next one is held instead
                lease.enter_context(leases.hold(build.backup, f"recovery:{request.pk}"))
        with steps.run(STEP_SETTINGS):
            write_settings(build)
        with steps.run(STEP_REPLAY):
            build.reached = replay_to_target(build)
    with steps.run(STEP_PROMOTE):
        replay.promote(build.target())
        build.say(STEP_PROMOTE)("pg_promote(): the server left recovery and is on a new timeline")
        audit.record("recovery.pitr.promote", actor=request.triggered_by or "system", obj=request,
                     target=str(build.source), details={"target": for_postgres(build.target_time),
                                                        "stopped": build.reached.stop_line})


def describe(backup: Backup) -> str:
    return (f"{backup}: ended {utc(backup.finished)}, WAL from {backup.start_wal} ({backup.start_lsn}), "
            f"verified {utc(backup.verified_at)}")


def extracted(build: Build, by_hand: bool) -> bool:
    """Extract the chosen backup: True once done. A backup found damaged is marked so (no longer verified); one
    chosen by hand fails the step, otherwise its half-extracted copy is removed, the next backup that reaches the
    target is chosen, and False says to extract that one."""
    assert build.backup is not None
    try:
        extract(build)
        return True
    except base_extract.DamagedBackup as damage:
        say = build.say(STEP_EXTRACT)
        mark_damaged(build.backup, str(damage), found_by=f"recovery #{build.request.pk} extracting it",
                     actor="system:recovery")
        say(f"{build.backup} is damaged, marked as failed verification: {damage}")
        if by_hand or build.cluster is None:
            raise
        newcluster.remove(build.cluster)
        build.cluster = None
        try:
            build.backup = choose_backup(build.source, build.target_time, say)
        except Refused as exc:
            raise base_extract.DamagedBackup(f"{damage}; no other base backup can serve: {exc}") from damage
        say(f"falling back to the next good base backup, {describe(build.backup)}")
        RecoveryRequest.objects.filter(pk=build.request.pk).update(backup=build.backup)
        return False


def extract(build: Build) -> None:
    name = name_of(build.request)
    build.cluster = NewCluster(newcluster.folder_for(name), build.source.os_user, build.source.major)
    RecoveryRequest.objects.filter(pk=build.request.pk).update(work_directory=str(build.cluster.root))
    build.request.work_directory = str(build.cluster.root)
    newcluster.create_folders(build.cluster)
    say = build.say(STEP_EXTRACT)
    say(f"into {build.cluster.data} (owner {build.source.os_user}, mode 0700)")

    within = build.steps.progress_within(STEP_EXTRACT)

    def on_bytes(done: int, total: int) -> None:
        within(done, total, f"extracting the base backup: {done / 2**20:.0f} of {total / 2**20:.0f} MB "
                            "(sha256 checked as it is read)")

    base_extract.extract(build.backup, build.cluster.data, os_user=build.cluster.os_user, on_bytes=on_bytes,
                         cancel=build.reporter.cancel)
    say("extracted; every file's sha256 matched the catalog")


def recovery_settings(cluster: NewCluster, port: int, archive: WalArchive, target: datetime) -> dict[str, str]:
    return {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(cluster.run),
        "cluster_name": cluster.name,
        # The copy must never push its WAL into the source's archive (same system identifier).
        "archive_mode": "off",
        "restore_command": setup.restore_command(archive),
        "recovery_target_time": for_postgres(target),
        "recovery_target_inclusive": "on",
        "recovery_target_action": "pause",
        "hot_standby": "on",
        # Nothing of the source's replication set-up: no primary to follow, no standby to wait for.
        "primary_conninfo": "",
        "primary_slot_name": "",
        "synchronous_standby_names": "",
        # The log pg_ctl writes is where the portal reads how the recovery went.
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_min_messages": "warning",
    }


def write_settings(build: Build) -> None:
    assert build.cluster is not None
    say = build.say(STEP_SETTINGS)
    build.port = free_port()
    build.passfile = passfile.write(build.source, build.cluster.name, "127.0.0.1", build.port)
    values = recovery_settings(build.cluster, build.port, build.archive, build.target_time)
    header = (f"Point-in-time recovery #{build.request.pk} of {build.source} by the PAWS360 portal, "
              f"{utc(timezone.now())}")
    newcluster.write_settings(build.cluster, values, header)
    for key in ("port", "restore_command", "recovery_target_time", "recovery_target_action", "archive_mode"):
        say(f"{key} = {newcluster.conf_value(values[key])}")
    say(f"recovery.signal created; credentials: the source's role {build.source.role} in {build.passfile} (0600)")


def replay_to_target(build: Build) -> replay.Reached:
    assert build.cluster is not None and build.backup is not None
    say = build.say(STEP_REPLAY)
    newcluster.start(build.cluster)
    say(f"server started on 127.0.0.1:{build.port} as {build.source.os_user}; log {build.cluster.log}")
    watch = replay.Watch(
        cluster=build.cluster, target=build.target(), target_time=build.target_time,
        start_lsn=walarchive.parse_lsn(build.backup.start_lsn),
        bound_lsn=replay_bound(build.archive, build.backup, build.target_time),
        segment_size=build.archive.segment_size, say=say,
        progress=build.steps.progress_within(STEP_REPLAY),
        cancel=build.reporter.cancel, timeout=settings.RECOVERY_REPLAY_TIMEOUT)
    reached = replay.follow(watch)
    last = utc(reached.last_commit) if reached.last_commit else "none after the backup"
    say(f"paused at the target: last replayed commit {last}; stopped before transaction {reached.stop_xid}"
        f"{' committed ' + utc(reached.stop_time) if reached.stop_time else ''}, at {reached.replay_lsn}")
    return reached
