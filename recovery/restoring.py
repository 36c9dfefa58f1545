"""What the logical recoveries share: the backup they restore (checked, recorded on the request, its RPO), the
database they restore into (recorded on the request, so a clean-up finds it: for drills and single-table recoveries,
a scratch database on the scratch cluster, never on production), and the restore itself as a step: the pg_restore
process named in the step's log, its progress on the bar (items of the archive's table of contents restored, against
how many there are), its errors kept."""

from __future__ import annotations

import re

from backups.models import Backup
from backups.restore import ONTO_SCRATCH, restore_logical
from backups.verify import compare_counts, restored_counts
from portal import pg, scratch
from recovery import choose, objectives
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.steps import Steps

# What pg_restore --verbose says as it works through the parts that take the time.
WORK_DONE = re.compile(r"processing data for table|creating (?:INDEX|CONSTRAINT|FK CONSTRAINT) ")
WORK_ITEMS = ("TABLE DATA ", "FK CONSTRAINT ", "CONSTRAINT ", "INDEX ")
TOC_LINE = re.compile(r"^\d+; \d+ \d+ (.+)$")


class RestoreFailed(Exception):
    pass


def checked_backup(request: RecoveryRequest, steps: Steps, step: RecoveryStep, *, cluster_wide: bool = False) -> Backup:
    """The request's backup, checked (the newest good one when none was chosen, then recorded on the request), and
    the RPO a restore of it achieves."""
    cluster = request.cluster if cluster_wide else None
    backup = choose.resolve(request.backup, request.database, cluster, lambda line: steps.log(step, line))
    if request.backup_id != backup.pk:
        request.backup = backup
        request.save(update_fields=["backup"])
    steps.log(step, f"backup #{backup.pk} {backup} of {backup.database}, taken {backup.created:%Y-%m-%d %H:%M} UTC: "
                    f"verified by restore, sha256 {backup.sha256} matches")
    objectives.record_rpo(request, backup)
    steps.log(step, f"RPO {request.rpo_seconds:.0f} s: from its snapshot to the request")
    return backup


def create_scratch(request: RecoveryRequest, prefix: str, backup: Backup, steps: Steps,
                   step: RecoveryStep) -> pg.Target:
    """A new, empty database for the recovery to work in, on the scratch cluster (never on the cluster `backup`
    came from); the cluster and the name recorded on the request before it is made. Raises scratch.Unavailable
    when no scratch cluster can take the restore."""
    cluster = scratch.choose(backup.cluster, backup.server_version)
    name = scratch.database_name(prefix, request.pk)
    request.scratch_cluster, request.result_database = cluster, name
    request.save(update_fields=["scratch_cluster", "result_database"])
    target = scratch.create_database(cluster, name)
    steps.log(step, f"created scratch database {name} on the scratch cluster {cluster} "
                    f"(PostgreSQL {cluster.server_version})")
    return target


def toc(backup: Backup) -> list[str]:
    """The archive's table of contents, one entry per item (`TABLE DATA paws360 users paws360_admin`); [] for an
    encrypted backup, which would have to be decrypted whole to be read."""
    if backup.encrypted:
        return []
    listed = pg.run("pg_restore", ["--list", str(backup.local_path)], capture_stdout=True, timeout=300)
    lines = listed.stdout.decode("utf-8", "replace").splitlines()
    return [match.group(1) for line in lines if (match := TOC_LINE.match(line))]


def work_items(backup: Backup) -> int:
    """How many slow items the restore goes through: table data, indexes, constraints."""
    items = sum(1 for entry in toc(backup) if entry.startswith(WORK_ITEMS))
    return items or max(1, len(backup.manifest.get("tables", {})))


def restore_into(backup: Backup, target: pg.Target, steps: Steps, step: RecoveryStep, *,
                 extra_args: tuple[str, ...] = (), jobs: int | None = None, onto_scratch: bool = False) -> None:
    """Restore `backup` (its checksum already checked) into the existing database `target`; `extra_args` select
    part of it; `onto_scratch`: `target` is on a scratch cluster, without the roles of the backup's own."""
    total = work_items(backup) if not extra_args else 0
    extra_args = (*ONTO_SCRATCH, *extra_args) if onto_scratch else extra_args
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        found = len(WORK_DONE.findall(line))
        if found and total:
            done += found
            steps.fraction(step, min(done / total, 0.99))
        elif not found and any(word in line for word in ("error", "warning", "fatal", "FATAL", "ERROR")):
            steps.log(step, line)

    restore_logical(backup, target, steps.reporter, jobs=backup.policy.jobs if jobs is None else jobs,
                    extra_args=extra_args, checksum_checked=True, on_stderr=on_line,
                    on_start=lambda pid: steps.log(step, f"pg_restore started (pid {pid}) into {target.dbname}"))


def verify_counts(backup: Backup, target: pg.Target) -> dict[str, dict[str, int]]:
    """Every table's rows in `target` against the backup's manifest; raise unless they all match."""
    expected = backup.manifest.get("tables", {})
    counts = restored_counts(target)
    differences = compare_counts(expected, counts)
    if differences:
        raise RestoreFailed("row counts differ from the backup's manifest: " + "; ".join(differences))
    return {table: {"backup": expected[table], "restored": counts[table]} for table in sorted(expected)}
