"""The steps of a point-in-time recovery and of its drill, in order, as the request's page shows them."""


from __future__ import annotations

STEP_WINDOW = "Check the target time against the recoverable window"
STEP_BACKUP = "Choose the base backup"
STEP_EXTRACT = "Extract the base backup into a new data directory"
STEP_SETTINGS = "Write the recovery settings"
STEP_REPLAY = "Start the server and replay WAL up to the target"
STEP_PROMOTE = "Promote at the target"
STEP_VERIFY = "Verify the recovered cluster"
STEP_REGISTER = "Register the recovered cluster"
STEP_DRILL_TARGET = "Choose the drill's target time (a minute ago, or the newest archived commit)"
STEP_DRILL_CHECK = "Check the recovered cluster with pg_amcheck and count its rows"
STEP_DRILL_REMOVE = "Stop and remove the scratch cluster"

RESTORE_STEPS = [STEP_BACKUP, STEP_EXTRACT, STEP_SETTINGS, STEP_REPLAY, STEP_PROMOTE]
PLAN = [STEP_WINDOW, *RESTORE_STEPS, STEP_VERIFY, STEP_REGISTER]
DRILL_PLAN = [STEP_DRILL_TARGET, *RESTORE_STEPS, STEP_DRILL_CHECK, STEP_DRILL_REMOVE]

# The runbook's row-count query (its verification after a restore), where these tables exist.
