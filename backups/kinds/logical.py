"""Full logical backups: pg_dump in an exported snapshot, exact row counts taken in that same snapshot (what
verification compares against), and the cluster's globals (roles without passwords, tablespaces) beside it.

The custom format streams through this process: hashed (and encrypted, if the policy says so) on its way to a
temporary file that is fsynced and renamed. The directory format is written by pg_dump's parallel jobs into a
temporary folder that is fsynced, hashed and renamed. A failure leaves nothing under a final name.
"""

from __future__ import annotations

import functools
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings
from django.utils import timezone

from backups import crypto, files
from backups.models import Backup, BackupPolicy
from backups.rowcounts import FINISHED_TABLE, IdleCoreCounter, user_tables
from portal import pg
from portal.jobs import Reporter

# Output bytes per byte of table data (heap and TOAST pages) at each gzip level, measured on the ~1 GB sample
# (bench/dump_options.py, bench/RESULTS.md). The progress estimate starts from it until the policy has a
# backup of its own to go by.
OUTPUT_RATIO = {0: 0.88, 1: 0.263, 2: 0.256, 3: 0.249, 4: 0.24, 5: 0.23, 6: 0.224, 7: 0.222, 8: 0.221, 9: 0.22}

# Sizes from pg_class (as of the last VACUUM or ANALYZE), not pg_table_size(), which waits for a lock on
# the table: a table locked by someone else must not hold the backup up before pg_dump is even started.
class BackupError(Exception):
    """A backup could not be taken; the message says why, for the DBA."""


def connect_or_fail(target: pg.Target, **kwargs: object) -> psycopg.Connection:
    try:
        return pg.connect(target, **kwargs)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        raise BackupError(f"cannot connect to {target}: {reason}") from exc


@dataclass
class Snapshot:
    conn: psycopg.Connection
    id: str


@contextmanager
def exported_snapshot(target: pg.Target) -> Iterator[Snapshot]:
    """A REPEATABLE READ transaction that exported its snapshot; open while the block runs, so pg_dump can
    import the snapshot and the row counts see exactly the rows pg_dump dumps."""
    conn = connect_or_fail(target, purpose="backup-snapshot", statement_timeout_ms=0, autocommit=False)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        # Idle in this transaction while pg_dump works: a server-wide idle timeout must not end it.
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield Snapshot(conn, snapshot_id)
    finally:
        conn.close()


@functools.cache
def program_version(program: str, major: int | None) -> str:
    output = pg.run(program, ["--version"], major=major, capture_stdout=True, timeout=30).stdout.decode()
    match = re.search(r"\d+(\.\d+)+", output)
    return match.group(0) if match else output.strip()


def estimate_output(policy: BackupPolicy, table_bytes: int) -> int | None:
    """Bytes the dump will write: table bytes times the output ratio of the policy's last backup at the same
    compression, or the measured ratio for that gzip level. None without statistics to go by."""
    if not table_bytes:
        return None
    ratio = OUTPUT_RATIO.get(policy.compression, 0.25)
    last = (policy.backups.filter(status=Backup.Status.SUCCEEDED, kind=BackupPolicy.Kind.LOGICAL,
                                  manifest__compression=policy.compression, size_bytes__gt=0)
            .order_by("-created").first())
    if last and last.manifest.get("table_bytes"):
        ratio = last.size_bytes / last.manifest["table_bytes"]
    return max(1, round(table_bytes * ratio))


def backup_stamp(backup: Backup) -> str:
    """When, and which backup: two backups taken in the same second never share a name."""
    return f"{timezone.now():%Y%m%dT%H%M%SZ}_{backup.pk}"


def globals_name(backup: Backup) -> str:
    """`<database>_<stamp>.globals.sql[.age]`, beside the dump `<database>_<stamp>.dump[.d][.age]`."""
    return backup.name[:backup.name.rindex(".dump")] + ".globals.sql" + (crypto.SUFFIX if backup.encrypted else "")


def backup_folder(backup: Backup) -> Path:
    assert backup.database is not None
    return Path("logical") / backup.cluster.name / backup.database.name


class FolderProgress:
    """Reports the size of a folder being written, once a second, while the block runs."""

    def __init__(self, folder: Path, report: Callable[[int], None]) -> None:
        self.folder, self.report = folder, report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            if self.folder.exists():
                self.report(files.tree_size(self.folder))

    def __enter__(self) -> FolderProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class FinishedFileHasher:
    """Hashes each table's data file of a directory-format dump as soon as pg_dump reports it finished, on a
    thread of its own: the checksum is mostly done by the time pg_dump is (its last table runs alone)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._hashing: dict[str, Future[str]] = {}

    def on_line(self, line: str) -> None:
        if match := FINISHED_TABLE.search(line):
            for name in (f"{match.group(1)}.dat.gz", f"{match.group(1)}.dat"):
                if (self.folder / name).is_file():
                    self._hashing[name] = self._pool.submit(files.sha256_of, self.folder / name)

    def hashed(self) -> dict[str, str]:
        return {name: future.result() for name, future in self._hashing.items()}

    def __enter__(self) -> FinishedFileHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Written:
    size: int  # bytes, as of the last VACUUM or ANALYZE
    sha256: str
    files: dict[str, str] | None = None


def stderr_logger(reporter: Reporter) -> Callable[[str], None]:
    """pg_dump --verbose is chatty: keep the table-data lines (they also name the table being dumped) and
    anything that is not routine."""

    def on_line(line: str) -> None:
        text = line.removeprefix("pg_dump: ")
        if text.startswith("dumping contents of table"):
            reporter.progress(note=text)
            reporter.log(line)
        elif not line.startswith("pg_dump: ") or any(w in text for w in ("error", "warning", "fatal", "detail")):
            reporter.log(line)

    return on_line


def dump_args(policy: BackupPolicy, fmt: str, snapshot_id: str, dbname: str) -> list[str]:
    args = [f"--format={fmt}", f"--compress={policy.compression}", f"--snapshot={snapshot_id}", "--verbose",
            f"--dbname={dbname}"]
    if fmt == BackupPolicy.DumpFormat.DIRECTORY:
        args.append(f"--jobs={policy.jobs}")
    return args


def run_dump(backup: Backup, reporter: Reporter, snapshot_id: str, final: Path,
             watch: Callable[[str], None] = lambda line: None) -> Written:
    """pg_dump into `final`; `watch` sees each line of its --verbose output."""
    try:
        return _run_dump(backup, reporter, snapshot_id, final, watch)
    except pg.PgToolError as exc:
        if exc.returncode is not None and exc.returncode < 0 and not (exc.cancelled or exc.timed_out):
            raise BackupError(f"pg_dump was killed by {signal.Signals(-exc.returncode).name}; "
                              "nothing was kept") from exc
        raise


def _run_dump(backup: Backup, reporter: Reporter, snapshot_id: str, final: Path,
              watch: Callable[[str], None]) -> Written:
    target = backup.database.target()  # type: ignore[union-attr]
    args = dump_args(backup.policy, backup.format, snapshot_id, target.dbname)
    logger = stderr_logger(reporter)

    def log_line(line: str) -> None:
        logger(line)
        watch(line)

    def dump(extra: list[str], **kwargs: object) -> None:
        kwargs.setdefault("on_stderr", log_line)
        pg.run("pg_dump", [*args, *extra], target=target, cancel=reporter.cancel,  # type: ignore[arg-type]
               timeout=settings.TASK_TIMEOUT, on_start=lambda pid: reporter.log(f"pg_dump started (pid {pid})"),
               **kwargs)

    if backup.format == BackupPolicy.DumpFormat.DIRECTORY:
        with (files.atomic_folder(final) as temp, FolderProgress(temp, lambda n: reporter.progress(done=n)),
              FinishedFileHasher(temp) as hasher):
            dump([f"--file={temp}"], on_stderr=lambda line: (log_line(line), hasher.on_line(line)))
            size, digest, per_file = files.tree_digest(temp, known=hasher.hashed())
        return Written(size, digest, per_file)
    with stored_stream(final, encrypt=backup.encrypted) as (write, out):
        def sink(chunk: bytes) -> None:
            write(chunk)
            reporter.progress(done=out.size)

        dump([], stdout_sink=sink)
    return Written(out.size, out.sha256)


@contextmanager
def stored_stream(final: Path, *, encrypt: bool) -> Iterator[tuple[Callable[[bytes], object], files.HashingWriter]]:
    """A stream to store as `final`, whole or not at all: yields the function to write with (through age when
    `encrypt`) and the file's HashingWriter (size and sha256 of the stored bytes)."""
    with files.atomic_file(final) as out:
        if not encrypt:
            yield out.write, out
            return
        with crypto.encrypting_writer(out) as encrypting:
            yield encrypting.write, out


def dump_globals(target: pg.Target, reporter: Reporter, final: Path, *, encrypt: bool) -> dict[str, object]:
    """The cluster's roles (without passwords) and tablespaces, which a database dump lacks."""
    with stored_stream(final, encrypt=encrypt) as (write, out):
        pg.run("pg_dumpall", ["--globals-only", "--no-role-passwords", f"--database={target.dbname}"],
               target=target, stdout_sink=write, on_stderr=reporter.log, cancel=reporter.cancel, timeout=600)
    return {"size": out.size, "sha256": out.sha256}


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def take_logical_backup(backup: Backup, reporter: Reporter) -> None:
    """The dump and the globals, each under its final name once whole; if either fails, neither is kept."""
    policy = backup.policy
    if backup.database is None:
        raise BackupError("a full logical backup needs a database")
    target = backup.database.target()
    stamp = backup_stamp(backup)
    backup.encrypted = policy.encrypt
    # An encrypted backup is one stream through age: the custom format (BackupPolicy.clean says so too).
    backup.format = BackupPolicy.DumpFormat.CUSTOM if policy.encrypt else policy.dump_format
    encrypted = crypto.SUFFIX if backup.encrypted else ""
    suffix = (".dump.d" if backup.format == BackupPolicy.DumpFormat.DIRECTORY else ".dump") + encrypted
    backup.name = f"{target.dbname}_{stamp}{suffix}"
    backup.path = str(backup_folder(backup) / backup.name)
    root = policy.primary_root()
    final = root / backup.path
    globals_file = final.with_name(globals_name(backup))
    for path in (final, globals_file):
        if path.exists():
            raise BackupError(f"{path} exists already: a backup is never written over another")
    reporter.log(f"backing up {target} to {final}")
    try:
        _take(backup, reporter, final, globals_file)
    except BaseException:
        remove([final, globals_file])
        raise


def _take(backup: Backup, reporter: Reporter, final: Path, globals_file: Path) -> None:
    policy, target = backup.policy, backup.database.target()  # type: ignore[union-attr]
    started = time.monotonic()
    backup.client_version = program_version("pg_dump", target.major)
    with exported_snapshot(target) as snapshot, ThreadPoolExecutor(max_workers=2) as pool:
        backup.server_version = snapshot.conn.execute("SHOW server_version").fetchone()[0].split()[0]
        # The transaction's start: the moment the backup's data is from (a restore of it loses what came after).
        snapshot_at = snapshot.conn.execute("SELECT now()").fetchone()[0]
        tables = user_tables(snapshot.conn)
        table_bytes = sum(t.size for t in tables)
        backup.estimated_bytes = estimate_output(policy, table_bytes)
        backup.save(update_fields=["encrypted", "format", "name", "path", "client_version", "server_version",
                                   "estimated_bytes"])
        reporter.progress(0, backup.estimated_bytes, f"dumping {len(tables)} tables")
        reporter.log(f"snapshot {snapshot.id}: {len(tables)} tables, {table_bytes} bytes of table data; "
                     f"pg_dump {backup.client_version}, server {backup.server_version}")
        # The row counts and the globals are taken while pg_dump runs.
        jobs = policy.jobs if backup.format == BackupPolicy.DumpFormat.DIRECTORY else 1
        counter = IdleCoreCounter(pool, snapshot.conn, tables, jobs)
        globals_dumped = pool.submit(dump_globals, target, reporter, globals_file, encrypt=backup.encrypted)
        try:
            written = run_dump(backup, reporter, snapshot.id, final, watch=counter.on_line)
        except BaseException:
            counter.abandon()
            snapshot.conn.cancel()
            raise
        counts = counter.result()
        globals_entry = globals_dumped.result()

    backup.manifest = {
        "snapshot": snapshot.id,
        "snapshot_at": snapshot_at.isoformat(),
        "format": backup.format,
        "compression": policy.compression,
        "table_bytes": table_bytes,
        "tables": counts,
        "globals": {"path": str(globals_file.relative_to(policy.primary_root())), **globals_entry},
    }
    if written.files is not None:
        backup.manifest["files"] = written.files
    backup.size_bytes, backup.sha256 = written.size, written.sha256
    backup.backup_seconds = time.monotonic() - started
    backup.save(update_fields=["manifest", "size_bytes", "sha256", "backup_seconds"])
    reporter.progress(written.size, written.size, "dumped")
    reporter.log(f"dumped {sum(counts.values())} rows of {len(counts)} tables: {written.size} bytes, "
                 f"sha256 {written.sha256}, in {backup.backup_seconds:.1f}s")
