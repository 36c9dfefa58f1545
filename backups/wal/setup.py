"""Setting a managed cluster up for continuous archiving, and proving it works.

`configure()` prepares the archive folder (owned by the cluster's OS user, with the cluster's system
identifier in SYSTEM_IDENTIFIER), sets archive_mode, archive_command and archive_timeout with ALTER SYSTEM,
reloads — or restarts through pg_ctl when archive_mode or wal_level must change — and then `prove()`s it:
pg_switch_wal() and wait until that segment is in the archive folder.
"""

from __future__ import annotations

import os
import pwd
import shlex
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from psycopg import sql

from backups.models import WalArchive
from backups.wal import walarchive
from portal import audit, pg, schedules
from portal.models import ManagedCluster

PROOF_TIMEOUT = 60.0

# Scheduled once any cluster archives (django-q2 runs at most one of each at a time per worker).
SCHEDULES = {
    "backups: sample WAL archives": ("backups.tasks.sample_wal_archives", "* * * * *"),
    "backups: verify WAL checksums": ("backups.tasks.verify_wal_archives", "17 * * * *"),
    "backups: WAL retention": ("backups.tasks.apply_wal_retention", "41 * * * *"),
}


def ensure_schedules() -> None:
    for name, (func, cron) in SCHEDULES.items():
        schedules.ensure(name, func, cron)


class ArchivingError(Exception):
    pass


def _quote(value: str | Path) -> str:
    """Quoted for the shell PostgreSQL runs the command with, and with % doubled for its own placeholders."""
    return shlex.quote(str(value)).replace("%", "%%")


def _program() -> list[str]:
    return [_quote(settings.WAL_ARCHIVE_PYTHON), "-I", "-S", _quote(settings.WAL_ARCHIVE_PROGRAM)]


def archive_command(archive: WalArchive) -> str:
    parts = [*_program(), "push", "%p", "%f", _quote(archive.folder)]
    if archive.compression != WalArchive.Compression.NONE:
        parts.append(f"--compress={archive.compression}")
    return " ".join(parts)


def restore_command(archive: WalArchive) -> str:
    """For the recovery work: fetch from this archive; a missing segment ends recovery, trouble stops it."""
    return " ".join([*_program(), "fetch", "%f", "%p", _quote(archive.folder)])


def server_facts(cluster: ManagedCluster) -> dict[str, object]:
    with pg.connect(cluster.target(), purpose="wal-setup") as conn:
        row = conn.execute(
            "SELECT system_identifier::text, current_setting('archive_mode'), current_setting('wal_level'),"
            " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')"
            " FROM pg_control_system()"
        ).fetchone()
    return {"system_identifier": row[0], "archive_mode": row[1], "wal_level": row[2], "segment_size": row[3]}


def prepare_folder(folder: Path, system_identifier: str, os_user: str) -> None:
    """Create the folder for the cluster's OS user and record whose archive it is; refuse another's."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / walarchive.MARKER
    if marker.exists():
        recorded = marker.read_text().split()[0] if marker.read_text().split() else ""
        if recorded != system_identifier:
            raise ArchivingError(f"{folder} is the WAL archive of database system {recorded}, "
                                 f"not of this cluster ({system_identifier})")
    else:
        temp = folder / f".{walarchive.MARKER}.tmp"
        temp.write_text(system_identifier + "\n")
        os.replace(temp, marker)
    if os.geteuid() == 0:
        owner = pwd.getpwnam(os_user)
        for path in (folder, marker):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    folder.chmod(0o750)


def _alter_system(conn, name: str, value: str) -> None:
    conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))


def configure(
    cluster: ManagedCluster,
    *,
    folder: Path | None = None,
    compression: str | None = None,
    archive_timeout: int | None = None,
    actor: audit.Actor = "system:setup",
    log=print,
) -> WalArchive:
    """Configure archiving on `cluster` into `folder` and prove it. Idempotent. Never on a scratch cluster: its WAL
    is never archived."""
    if cluster.scratch:
        raise ArchivingError(f"{cluster} is a scratch cluster: its WAL is never archived, and it is never backed up")
    facts = server_facts(cluster)
    existing = WalArchive.objects.filter(cluster=cluster).first()
    folder = Path(folder or (existing.path if existing else settings.WAL_ARCHIVE_ROOT / cluster.name))
    prepare_folder(folder, str(facts["system_identifier"]), cluster.os_user)
    archive, _ = WalArchive.objects.update_or_create(cluster=cluster, defaults={
        "path": str(folder),
        "compression": compression or (existing.compression if existing else settings.WAL_ARCHIVE_COMPRESSION),
        "archive_timeout": archive_timeout or (existing.archive_timeout if existing else settings.WAL_ARCHIVE_TIMEOUT),
        "system_identifier": str(facts["system_identifier"]),
        "segment_size": int(facts["segment_size"]),
    })
    restart = facts["archive_mode"] == "off" or facts["wal_level"] == "minimal"
    if restart and not cluster.is_local:
        raise ArchivingError(f"{cluster}: archive_mode or wal_level must change, which needs a restart, and the "
                             "portal does not control this cluster: set them and restart it, then run this again")
    command = archive_command(archive)
    with pg.connect(cluster.target(), purpose="wal-setup") as conn:
        if facts["wal_level"] == "minimal":
            _alter_system(conn, "wal_level", "replica")
        if facts["archive_mode"] == "off":
            _alter_system(conn, "archive_mode", "on")
        _alter_system(conn, "archive_command", command)
        _alter_system(conn, "archive_timeout", f"{archive.archive_timeout}s")
        if not restart:
            conn.execute("SELECT pg_reload_conf()")
    if restart:
        log(f"restarting {cluster} to turn archive_mode on")
        data = Path(cluster.data_directory)
        pg.pg_ctl("restart", data, major=cluster.major, run_as=cluster.os_user, log_file=data.parent / "server.log")
    archive.configured_at = timezone.now()
    archive.save(update_fields=["configured_at"])
    ensure_schedules()
    log(f"archive_command = {command}")
    segment = prove(archive)
    audit.record("wal.configure", actor=actor, obj=archive, target=str(cluster),
                 details={"folder": str(folder), "archive_command": command, "restarted": restart,
                          "archive_timeout": archive.archive_timeout, "proof_segment": segment})
    log(f"proved: {segment} reached {folder}")
    return archive


def _wait_for_setting(conn, command: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT current_setting('archive_command')").fetchone()[0] != command:
        if time.monotonic() > deadline:
            raise ArchivingError("the server did not take the new archive_command (reload failed?)")
        time.sleep(0.1)


def prove(archive: WalArchive, timeout: float = PROOF_TIMEOUT) -> str:
    """Switch to a new WAL segment and wait until the one just closed is in the archive folder."""
    with pg.connect(archive.cluster.target(), purpose="wal-proof") as conn:
        _wait_for_setting(conn, archive_command(archive), timeout)
        conn.execute("SELECT txid_current()")  # something to archive even on an idle server
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + timeout
        while walarchive.stored(archive.folder, segment) is None:
            if time.monotonic() > deadline:
                failed = conn.execute("SELECT last_failed_wal, last_failed_time FROM pg_stat_archiver").fetchone()
                detail = f"; the archiver last failed on {failed[0]} at {failed[1]}" if failed[0] else ""
                raise ArchivingError(f"{segment} did not reach {archive.folder} within {timeout:.0f} s{detail} "
                                     "(the server log has the archive command's message)")
            time.sleep(0.1)
    archive.proven_at, archive.proof_segment = timezone.now(), segment
    archive.save(update_fields=["proven_at", "proof_segment"])
    return segment
