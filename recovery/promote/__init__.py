"""Making a recovered cluster production (the last step of Scenario 2), on a local cluster the portal controls.

A point-in-time recovery builds its cluster beside production (RECOVERY_ROOT/<name>/data, its own port). This
separate request, always approved by a second DBA, swaps data directories: the application services stop, the
recovered cluster and then production stop cleanly (pg_ctl -m fast, as the OS user), production's data directory
is renamed `<data>.before_<UTC time>` (kept, never deleted) and the recovered one is renamed into its place (one
file system: a rename, nothing copied). The settings the recovery appended to postgresql.auto.conf are taken out,
so production's own apply again (its port, archive_mode, archive_command); production starts through pg_ctl, must
leave recovery, show the row counts the recovered cluster had, and archive a segment of its new timeline into its
archive. The recovered cluster's record stays, for history, no longer controlled by the portal; its passfile goes.

A failure never makes things worse. Before production stops, nothing changed: the recovered cluster starts again
and so do the services. After production's data directory was moved, it is put back (whatever runs from its path
is stopped, the directories renamed back, production started) and the step log says so. A worker that dies
mid-way is undone the same way by the reaper (`rollback.undo_dead_run`), from what the request recorded before
acting.

The modules: `stages` (the steps), `checks` (what is refused), `swap` (the data directories, production's start
and verification), `rollback`, `procedure`.
"""

from recovery.promote.checks import backups_held, no_backup_running, validate_request
from recovery.promote.procedure import promote
from recovery.promote.rollback import undo_dead_run
from recovery.promote.stages import CHECK, SETTINGS, START, VERIFY, plan
from recovery.promote.swap import facts, retire

__all__ = ["CHECK", "SETTINGS", "START", "VERIFY", "backups_held", "facts", "no_backup_running", "plan", "promote",
           "retire", "undo_dead_run", "validate_request"]
