"""A failed run keeps nothing under a final name.

Each file of a backup is written under a temporary name and renamed once whole, but a run's files reach their final
names before the run is over: the globals beside a dump while pg_dump still runs, the dump while it is verified.
Keeping them under temporary names until the run is good would give every reader of a backup (its checksum, its
restore, pg_verifybackup) a second path to look at, and the renames of two files still would not be one step; so
instead the run's row names its files from the start (`path`, and the globals' name from it), and a run that fails
removes them: in the worker (`removed_unless_good`, around taking and verifying) and, when the worker died, in
`after_reaped`. Only the failed row refers to them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backups import files, verify
from backups.kinds import base as basebackup
from backups.kinds import logical as dump
from backups.models import Backup, BackupPolicy
from portal import audit
from portal.jobs import Reporter

log = logging.getLogger(__name__)


def final_paths(backup: Backup) -> list[Path]:
    """Every final name a run of `backup` writes, whether it got there or not: the backup, what the manifest lists
    beside it and, for a logical backup, its globals (named from the backup's name: the manifest is written last)."""
    if not backup.path:
        return []
    root = backup.policy.primary_root()
    paths = [root / rel for rel in backup.artifact_paths()]
    if backup.kind == BackupPolicy.Kind.LOGICAL:
        paths.append(backup.local_path.with_name(dump.globals_name(backup)))
    return list(dict.fromkeys(paths))


def remove(backup: Backup) -> list[Path]:
    """Remove what the failed run of `backup` wrote, as its row records it: the temporary files of what was being
    written (and a base backup's copy extracted for its verification) and the files under their final names; what
    was removed. A path that another row names too (a base backup of the same cluster named in the same second) is
    left alone: it is that row's."""
    stored = Backup.objects.select_related("policy").get(pk=backup.pk)
    if not stored.path or Backup.objects.filter(path=stored.path).exclude(pk=stored.pk).exists():
        return []
    paths = final_paths(stored)
    removed = files.remove_temps(paths[0], *(path.name for path in paths[1:] if path.parent == paths[0].parent))
    if stored.kind == BackupPolicy.Kind.BASE and files.remove_path(scratch := basebackup.verify_scratch(paths[0])):
        removed.append(scratch)
    removed += [path for path in paths if files.remove_path(path)]
    if removed:
        files.fsync_dir(paths[0].parent)
    return removed


@contextmanager
def removed_unless_good(backup: Backup, reporter: Reporter) -> Iterator[None]:
    """Around taking and verifying a backup: if the block raises, or ends with a cancel requested, the run's files
    are removed (an audit event names them)."""
    try:
        yield
    except BaseException:
        _remove_after_failure(backup, reporter)
        raise
    if reporter.cancel.is_set():
        _remove_after_failure(backup, reporter)


def _remove_after_failure(backup: Backup, reporter: Reporter) -> None:
    try:
        removed = remove(backup)
    except Exception as exc:  # the run's own error is the one to record; the reaper's clean-up does not run here
        log.exception("removing what failed backup %s wrote failed", backup.pk)
        reporter.log(f"could not remove what the failed run wrote: {exc}")
        return
    if removed:
        reporter.log(f"removed what the failed run wrote: {', '.join(path.name for path in removed)}")
        audit.record("backup.cleanup", actor=backup.triggered_by or "system", obj=backup, target=str(backup),
                     details={"removed": [str(path) for path in removed], "dropped": []})


def after_reaped(backup: Backup) -> None:
    """What a dead run left (the reaper ended its programs first): its temporary files, the files it had finished
    under their final names, and the scratch database of a verification it was running (on the scratch cluster).
    The audit event names what went. Registered for `portal.jobs.reap_dead_jobs` by BackupsConfig.ready()."""
    if not backup.path:
        return
    removed = remove(backup)
    dropped = verify.drop_scratch_of(backup) if backup.kind == BackupPolicy.Kind.LOGICAL else []
    audit.record("backup.cleanup", obj=backup, details={"removed": [str(p) for p in removed], "dropped": dropped})
