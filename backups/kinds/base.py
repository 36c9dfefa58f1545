"""Physical base backups with pg_basebackup, and their verification with pg_verifybackup.

A backup is written in tar format (server-side zstd by default: measured on the 1 GB sample in
bench/bench_basebackup.py) with the WAL it needs streamed alongside (`--wal-method=stream`, so it is
restorable on its own) and a manifest, into `.partial-<name>` beside its final folder, fsynced, then renamed.
Start and end LSN, timeline and the first WAL segment it needs come from the manifest's WAL-Ranges.

Verification first checks each tar file's sha256 against the catalog: pg_verifybackup has no checksum of the WAL,
it parses the records between the start and the end, and a flipped byte elsewhere in pg_wal.tar goes unnoticed.
PostgreSQL 15's pg_verifybackup reads plain-format backups only, so verification then extracts the tar files
(`base_extract`, the extractor recovery uses too, as the portal's own user: the copy is the portal's to read back)
into a temporary folder beside the backup and runs the full check there: every file against the manifest's
checksums, and the WAL range parsed with pg_waldump.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from backups import files
from backups.kinds import base_extract
from backups.kinds.logical import backup_stamp
from backups.models import Backup, BackupPolicy
from backups.restore import check_checksum
from backups.wal import walarchive
from portal import pg
from portal.jobs import Reporter

PROGRESS_SQL = """
SELECT p.phase, p.backup_total, p.backup_streamed
FROM pg_stat_progress_basebackup p JOIN pg_stat_activity a USING (pid)
WHERE a.application_name = %s
"""


class VerificationFailed(Exception):
    pass


def compress_option(policy: BackupPolicy) -> str:
    template = settings.BASE_BACKUP_COMPRESS
    if not template or policy.compression == 0:
        return ""
    return template.format(level=policy.compression, workers=policy.jobs)


def pg_basebackup_args(policy: BackupPolicy, folder: Path, label: str) -> list[str]:
    """The options; the same list the benchmark gives raw pg_basebackup."""
    args = [f"--pgdata={folder}", "--format=tar", "--wal-method=stream", f"--checkpoint={policy.checkpoint}",
            "--manifest-checksums=CRC32C", f"--label={label}", "--no-password", "--verbose"]
    if option := compress_option(policy):
        args.append(f"--compress={option}")
    if settings.BASE_BACKUP_MAX_RATE:
        args.append(f"--max-rate={settings.BASE_BACKUP_MAX_RATE}")
    return args


def remove_stale_partials(folder: Path) -> None:
    """Temporary folders of base backups whose run died (a killed worker cannot clean up after itself)."""
    running = set(Backup.objects.filter(status__in=[Backup.Status.QUEUED, Backup.Status.RUNNING])
                  .values_list("name", flat=True))
    for partial in folder.glob(f"{files.TEMP_PREFIX}*"):
        if partial.name.removeprefix(files.TEMP_PREFIX) not in running:
            shutil.rmtree(partial, ignore_errors=True)


@contextmanager
def watching_progress(backup: Backup, app_name: str, reporter: Reporter) -> Iterator[None]:
    """Report pg_stat_progress_basebackup's bytes streamed of the total, once a second."""
    stop = threading.Event()

    def watch() -> None:
        try:
            with pg.connect(backup.cluster.target(), purpose="basebackup-progress") as conn:
                while not stop.wait(1.0):
                    row = conn.execute(PROGRESS_SQL, [app_name]).fetchone()
                    if row:
                        phase, total, streamed = row
                        reporter.progress(streamed or 0, total, phase)
        except Exception as exc:  # progress is a nicety; the backup goes on without it
            reporter.log(f"progress unavailable: {exc}")

    thread = threading.Thread(target=watch, name=f"basebackup-progress-{backup.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def server_facts(backup: Backup) -> tuple[int, str]:
    with pg.connect(backup.cluster.target(), purpose="basebackup") as conn:
        segment_size, version = conn.execute(
            "SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),"
            " current_setting('server_version')").fetchone()
    return segment_size, version.split()[0]


def read_manifest(folder: Path, segment_size: int) -> dict[str, object]:
    manifest = json.loads((folder / "backup_manifest").read_text())
    ranges = manifest["WAL-Ranges"]
    start, end = walarchive.parse_lsn(ranges[0]["Start-LSN"]), walarchive.parse_lsn(ranges[-1]["End-LSN"])
    timeline = int(ranges[0]["Timeline"])
    return {
        "start_lsn": walarchive.format_lsn(start),
        "end_lsn": walarchive.format_lsn(end),
        "timeline": timeline,
        "start_wal": walarchive.segment_name(timeline, start // segment_size, segment_size),
        "end_wal": walarchive.segment_name(int(ranges[-1]["Timeline"]), end // segment_size, segment_size),
        "wal_ranges": ranges,
        "manifest_files": len(manifest["Files"]),
    }


def take_base_backup(backup: Backup, reporter: Reporter) -> None:
    """Take the base backup described by the (claimed) row and record it; the pipeline verifies it."""
    policy, cluster = backup.policy, backup.cluster
    segment_size, server_version = server_facts(backup)
    backup.name = backup.name or f"{cluster.name}-base-{backup_stamp(backup)}"  # the id: never two of one name
    backup.path = f"{cluster.name}/base/{backup.name}"
    final = backup.local_path
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final.parent)
    temp = files.temp_name(final)
    args = pg_basebackup_args(policy, temp, f"paws360 {backup.name}")
    compression = compress_option(policy)
    backup.format = f"tar+{compression.split(':')[0]}" if compression else "tar"  # e.g. tar+server-zstd
    backup.server_version, backup.client_version = server_version, str(cluster.major or settings.PG_DEFAULT_MAJOR)
    backup.save(update_fields=["name", "path", "format", "server_version", "client_version"])
    app_name = f"paws360-basebackup-{backup.pk}"
    reporter.log(f"pg_basebackup {' '.join(args)}")
    try:
        with watching_progress(backup, app_name, reporter):
            pg.run("pg_basebackup", args, target=cluster.target(), timeout=settings.TASK_TIMEOUT,
                   on_stderr=reporter.log, cancel=reporter.cancel, env={"PGAPPNAME": app_name})
        facts = read_manifest(temp, segment_size)
        files.fsync_tree(temp)
        temp.rename(final)
        files.fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    record(backup, final, {**facts, "compression": compression})
    reporter.progress(backup.size_bytes, backup.size_bytes, "written")
    reporter.log(f"{backup.name}: {backup.size_bytes} bytes, WAL {facts['start_wal']} from {backup.start_lsn}")


def record(backup: Backup, folder: Path, facts: dict[str, object]) -> None:
    size, digest, per_file = files.tree_digest(folder)
    backup.size_bytes, backup.sha256 = size, digest
    backup.start_lsn, backup.end_lsn = str(facts["start_lsn"]), str(facts["end_lsn"])
    backup.timeline, backup.start_wal = int(facts["timeline"]), str(facts["start_wal"])  # type: ignore[arg-type]
    backup.manifest = {**facts, "files": per_file}
    backup.save(update_fields=["size_bytes", "sha256", "start_lsn", "end_lsn", "timeline", "start_wal",
                               "manifest"])


def verify_scratch(folder: Path) -> Path:
    """Where verification extracts the base backup in `folder`, beside it."""
    return folder.with_name(f".verify-{folder.name}")


def _extracting(reporter: Reporter) -> Callable[[int, int], None]:
    def on_bytes(done: int, total: int) -> None:
        reporter.progress(note=f"verifying: extracting {done / 2**20:.0f} of {total / 2**20:.0f} MB")

    return on_bytes


def check(backup: Backup, reporter: Reporter) -> str:
    """Every tar file's sha256 against the catalog (a damaged one is named), then pg_verifybackup on an extracted
    copy: files against the manifest, and the WAL range parsed. The verification of `backups.verify.VERIFIERS` for
    base backups (it records the outcome, under a lease)."""
    check_checksum(backup)
    reporter.log(f"verification: the sha256 of each of {len(backup.manifest.get('files', {}))} files matches")
    folder = backup.local_path
    scratch = verify_scratch(folder)
    try:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        base_extract.extract(backup, scratch, os_user=None, on_bytes=_extracting(reporter), cancel=reporter.cancel)
        shutil.copy2(folder / "backup_manifest", scratch / "backup_manifest")
        pg.run("pg_verifybackup", [str(scratch)], major=backup.cluster.major, timeout=settings.TASK_TIMEOUT,
               on_stderr=reporter.log)
    except (pg.PgToolError, OSError, base_extract.ExtractError) as exc:
        raise VerificationFailed(f"pg_verifybackup: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    files_checked = backup.manifest.get("manifest_files")
    return f"pg_verifybackup: {files_checked} files and WAL {backup.start_lsn}..{backup.end_lsn}"
