"""Point-in-time recovery (Scenario 2): a new cluster beside production, recovered to a moment in time.

The target time is checked against the recoverable window when the request is made and again when it runs; a
target beyond a gap in the archive is refused naming the gap and the windows. The newest succeeded, verified,
unexpired base backup that ended before the target (the next one, when it is found damaged while it is extracted:
it is marked so) is restored into a new data directory (RECOVERY_ROOT/<name>, never the source's), with
restore_command fetching from the source's WAL archive, recovery_target_time in UTC with its offset,
recovery_target_action = 'pause' and recovery.signal. The server starts on a free port of 127.0.0.1 as the
cluster's OS user; the portal follows the replay and promotes only once PostgreSQL paused at the target (see
recovery/replay.py). The result is verified and registered as a new managed cluster (its databases as staging),
with the measured RTO and RPO.

Making a recovered cluster production (swapping data directories on a local cluster) is a separate, approved
request (recovery/promote.py): a request with destination "replace" is refused and pointed there.

A failed run stops its server and removes its data directory (a copy of student records that nothing
manages and nothing can resume); the server log stays in RECOVERY_ROOT/<name>/ for the DBA. A run whose
worker was killed is cleaned up by the reaper or by the next recovery (`reaper`).

The modules, by concern: `plan` (the steps), `times`, `target` (checks at submission and at run time, the
base backup, name and port), `build` (the new cluster up to promotion), `outcome` (verification, measured
objectives, registration), `procedure` (the recovery), `drill`, `reaper`.
"""

from recovery.pitr.build import recovery_settings
from recovery.pitr.drill import drill
from recovery.pitr.plan import (
    DRILL_PLAN,
    PLAN,
    STEP_BACKUP,
    STEP_EXTRACT,
    STEP_PROMOTE,
    STEP_REPLAY,
    STEP_WINDOW,
)
from recovery.pitr.procedure import recover_to_point
from recovery.pitr.reaper import CLEANUP_KINDS, sweep_leftovers, undo_dead_run
from recovery.pitr.target import archive_of, choose_backup, free_port, replay_bound, validate_request
from recovery.pitr.times import for_postgres, utc

__all__ = [
    "CLEANUP_KINDS", "DRILL_PLAN", "PLAN", "STEP_BACKUP", "STEP_EXTRACT", "STEP_PROMOTE", "STEP_REPLAY", "STEP_WINDOW",
    "archive_of", "choose_backup", "drill", "for_postgres", "free_port", "recover_to_point", "recovery_settings",
    "replay_bound", "sweep_leftovers", "undo_dead_run", "utc", "validate_request",
]
