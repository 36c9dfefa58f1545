"""The logical restore drill: the runbook's "Recovery Testing", measured.

The newest good logical backup of the database (or of the cluster, when the drill names no database) is restored
into a scratch database on the scratch cluster (never on production: `portal.scratch`; refused without one that can
take it), every table's row count compared with the backup's manifest, the scratch database checked
with `pg_amcheck` (heap and B-tree indexes; the amcheck extension is installed there, and only there), and the
scratch database dropped whatever happened. RTO is measured from the first step to verified, and compared with
the runbook's 4-hour objective.

`logical_drill(request, reporter)` is registered as the "logical" drill in recovery/drills.py, which schedules
drills, checks their RTO against the objective and alerts when one fails.
"""

from __future__ import annotations

from backups import leases
from portal import pg
from portal.jobs import Reporter
from recovery import cleanup, objectives
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.restoring import RestoreFailed, checked_backup, create_scratch, restore_into, verify_counts
from recovery.steps import Steps

CHOOSE = "Choose the newest verified logical backup"
RESTORE = "Restore it into a scratch database"
COUNTS = "Verify row counts against the backup's manifest"
AMCHECK = "Check tables and indexes with pg_amcheck"
DROP = "Drop the scratch database"
SCRATCH_PREFIX = "portal_drill_"
AMCHECK_TIMEOUT = 4 * 3600


def logical_drill(request: RecoveryRequest, reporter: Reporter) -> None:
    steps = Steps(request, reporter, [CHOOSE, RESTORE, COUNTS, AMCHECK, DROP])
    with cleanup.scratch_dropped(request, steps, DROP):
        with steps.run(CHOOSE) as step:
            backup = checked_backup(request, steps, step, cluster_wide=True)
        with leases.hold(backup, f"drill:{request.pk}"):
            with steps.run(RESTORE) as step:
                assert backup.database is not None
                scratch = create_scratch(request, SCRATCH_PREFIX, backup, steps, step)
                restore_into(backup, scratch, steps, step, onto_scratch=True)
            with steps.run(COUNTS) as step:
                counts = verify_counts(backup, scratch)
                request.verification["row_counts"] = counts
                request.save(update_fields=["verification"])
                steps.log(step, f"{len(counts)} tables, {sum(c['restored'] for c in counts.values()):,} rows: "
                                "every count matches the backup's manifest")
        with steps.run(AMCHECK) as step:
            amcheck(request, scratch, steps, step)
        first = steps.first_started()
        assert first is not None and first.started is not None
        seconds = objectives.record_rto(request, first.started, "verified")
        met = "within" if request.verification["rto"]["met"] else "OVER"
        reporter.log(f"RTO {seconds:.1f} s to verified: {met} the objective of {objectives.rto_objective():.0f} s")
    request.verification["verified"] = True
    request.save(update_fields=["verification"])


def amcheck(request: RecoveryRequest, scratch: pg.Target, steps: Steps, step: RecoveryStep) -> None:
    """pg_amcheck on the scratch database (user tables and the catalogue): exit 0 is clean; corruption is
    reported on standard output, with exit code 2."""
    assert request.backup is not None
    report: list[str] = []
    found = bytearray()
    try:
        pg.run("pg_amcheck", ["--install-missing", f"--jobs={max(1, request.backup.policy.jobs)}", "--verbose",
                              scratch.dbname],
               target=scratch, stdout_sink=found.extend, timeout=AMCHECK_TIMEOUT, on_stderr=report.append,
               cancel=steps.reporter.cancel)
    except pg.PgToolError as exc:
        output = found.decode("utf-8", "replace")[-4000:]
        request.verification["amcheck"] = {"ok": False, "error": str(exc), "output": output}
        request.save(update_fields=["verification"])
        for line in output.splitlines()[:20]:
            steps.log(step, line)
        raise RestoreFailed(f"pg_amcheck found problems in the restored data: {exc}") from exc
    checked = sum(1 for line in report if "checking heap table" in line or "checking btree index" in line)
    request.verification["amcheck"] = {"ok": True, "relations_checked": checked}
    request.save(update_fields=["verification"])
    steps.log(step, f"pg_amcheck: {checked} tables and indexes checked (the catalogue's included), no corruption")


