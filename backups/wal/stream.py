"""Streaming WAL with pg_receivewal into the archive's stream/ folder, for an RPO under a second.

`configure()` creates the physical replication slot (so the server keeps WAL the receiver has not yet had),
caps what a slot may hold back (max_slot_wal_keep_size, WAL_SLOT_MAX_KEEP: a stopped receiver's slot is given
up rather than filling the server's disk) and, when synchronous, names the receiver in
synchronous_standby_names: every commit then waits until the receiver has flushed it (RPO 0 bytes), and
commits block while no receiver is connected — the price of that RPO. `receive()` runs pg_receivewal
--synchronous and restarts it with a back-off until told to stop. The slot's retained WAL is sampled with the
archiver (walstatus) and raises an alert when it grows or the slot is lost.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

from django.conf import settings
from psycopg import sql

from backups.models import WalArchive
from portal import audit, pg

MAX_BACKOFF = 30.0


def slot_for(archive: WalArchive) -> str:
    return re.sub(r"[^a-z0-9_]", "_", f"paws360_{archive.cluster.name}".lower())[:63]


def application_name(archive: WalArchive) -> str:
    return slot_for(archive)


def configure(archive: WalArchive, *, synchronous: bool, actor: audit.Actor = "system:stream") -> WalArchive:
    archive.slot_name = slot_for(archive)
    archive.stream_synchronous = synchronous
    archive.save(update_fields=["slot_name", "stream_synchronous"])
    archive.stream_folder.mkdir(parents=True, exist_ok=True)
    with pg.connect(archive.cluster.target(), purpose="wal-stream") as conn:
        exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [archive.slot_name]).fetchone()
        if not exists:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", [archive.slot_name])
        if settings.WAL_SLOT_MAX_KEEP:
            conn.execute(sql.SQL("ALTER SYSTEM SET max_slot_wal_keep_size = {}").format(
                sql.Literal(settings.WAL_SLOT_MAX_KEEP)))
        names = conn.execute("SELECT current_setting('synchronous_standby_names')").fetchone()[0]
        ours = f'"{application_name(archive)}"'
        if synchronous:
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(ours)))
        elif names == ours:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
    audit.record("wal.stream_configure", actor=actor, obj=archive, target=str(archive.cluster),
                 details={"slot": archive.slot_name, "synchronous": synchronous,
                          "max_slot_wal_keep_size": settings.WAL_SLOT_MAX_KEEP})
    return archive


def receive(archive: WalArchive, stop: threading.Event, log: Callable[[str], None] = print) -> None:
    """Run pg_receivewal until `stop` is set, restarting it after a failure with a growing pause."""
    args = [f"--directory={archive.stream_folder}", f"--slot={archive.slot_name}", "--synchronous",
            "--no-loop", "--no-password", "--verbose"]
    backoff = 1.0
    while not stop.is_set():
        try:
            pg.run("pg_receivewal", args, target=archive.cluster.target(), cancel=stop, on_stderr=log,
                   env={"PGAPPNAME": application_name(archive)}, timeout=math.inf)  # until `stop`: a receiver
        except pg.PgToolError as exc:
            if stop.is_set():
                break
            log(f"pg_receivewal stopped: {exc}; again in {backoff:.0f} s")
            audit.record("wal.stream_interrupted", actor="system:stream", obj=archive,
                         target=str(archive.cluster), outcome=audit.Outcome.FAILURE, details={"error": str(exc)})
        else:
            log("pg_receivewal ended; starting it again")
        if stop.wait(backoff):
            break
        backoff = min(backoff * 2, MAX_BACKOFF)
