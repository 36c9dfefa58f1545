"""Complete restore: the runbook's Scenario 1, done so that a failure loses nothing.

The backup is restored into a new database beside production (`<name>_restored_<time>`), never over it. Its row
counts are checked against the backup's manifest, the runbook's row-count query is run and kept, and it is
analysed. Then:

- destination "replace" (approved by a second DBA): the application services named in deployment configuration
  are stopped first (and must stop answering their health URLs); after verification, production refuses new
  connections, its sessions are ended and, in one transaction, it is renamed `<name>_before_<time>` and the restored
  database takes its name; the services are started in order and each must answer its health URL. The old
  database stays until someone drops it.
- destination "beside": production and its services are not disturbed; the restored database stays beside it,
  registered in the portal as a staging database.

A failure before the swap drops the unfinished restored database and starts the services again: production was
never touched. RTO runs from the first step to the services healthy (replace) or to verified (beside).
"""

from __future__ import annotations

from dataclasses import dataclass

from backups import leases
from backups.models import Backup
from portal import audit
from portal.jobs import Reporter
from portal.models import ManagedDatabase
from recovery import cleanup, databases, procedure, services
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.restoring import RestoreFailed, checked_backup, restore_into, verify_counts
from recovery.runbook import runbook_counts
from recovery.steps import Steps

CHECK = "Check the backup"
CREATE = "Create the database to restore into"
RESTORE = "Restore the backup"
VERIFY = "Verify row counts (manifest and the runbook's query)"
ANALYZE = "ANALYZE"
SWAP = "Swap: production becomes <name>_before_<time>, the restored database takes its name"
REGISTER = "Register the restored database beside production"


@dataclass(frozen=True)
class Names:
    production: str
    restored: str
    before: str = ""


def names_for(request: RecoveryRequest) -> Names:
    assert request.database is not None
    production, when = request.database.name, databases.stamp()
    if request.destination == RecoveryRequest.Destination.REPLACE:
        return Names(production, databases.derived_name(production, f"restored_{when}"),
                     databases.derived_name(production, f"before_{when}"))
    return Names(production, request.destination_name or databases.derived_name(production, f"restored_{when}"))


def plan(replace: bool, with_services: bool) -> list[str]:
    stop, start = ([services.STOP_STEP], [services.START_STEP]) if replace and with_services else ([], [])
    return [CHECK, *stop, CREATE, RESTORE, VERIFY, ANALYZE, SWAP if replace else REGISTER, *start]


def restore_complete(request: RecoveryRequest, reporter: Reporter) -> None:
    replace = request.destination == RecoveryRequest.Destination.REPLACE
    app = services.configured() if replace else []
    steps = Steps(request, reporter, plan(replace, bool(app)))
    names = names_for(request)
    with procedure.undone_on_failure(request, steps, app, lambda: undo(request, steps), RestoreFailed):
        backup = check_backup(request, steps)
        with leases.hold(backup, f"recovery:{request.pk}"):
            if app:
                procedure.stop_services(steps, app)
            restore_beside(request, backup, names, steps, app)
        if replace:
            with steps.run(SWAP) as step:
                swap(request, names, steps, step)
        else:
            with steps.run(REGISTER) as step:
                keep_connection_limit(request, names, steps, step)
                databases.register(request.cluster, names.restored, ManagedDatabase.Environment.STAGING)
                steps.log(step, f"{names.restored} is registered as a staging database of {request.cluster}")
    procedure.finish(request, steps, app, "the swap" if replace else "the restored database verified")


def undo(request: RecoveryRequest, steps: Steps) -> list[str]:
    """After a failure: the unfinished restored database dropped (production reopened if a swap was under way);
    what went wrong."""
    try:
        cleanup.undo_restore(request, lambda line: steps.reporter.log(f"[clean-up] {line}"))
    except Exception as exc:  # the services must still be started
        return [f"clean-up failed: {exc}"]
    return []


def check_backup(request: RecoveryRequest, steps: Steps) -> Backup:
    with steps.run(CHECK) as step:
        return checked_backup(request, steps, step)


def restore_beside(request: RecoveryRequest, backup: Backup, names: Names, steps: Steps,
                   app: list[services.AppService]) -> None:
    cluster = request.cluster
    with steps.run(CREATE) as step:
        if databases.exists(cluster, names.restored):
            raise databases.DatabaseError(f"{names.restored} exists already; choose another destination name")
        databases.create_like(cluster, names.restored, names.production)
        request.result_database = names.restored
        request.save(update_fields=["result_database"])
        steps.log(step, f"created {names.restored} with the owner, encoding, locale, privileges, settings (its own "
                        f"and per role), comment and security labels of {names.production}")
    target = cluster.target(names.restored)
    with steps.run(RESTORE) as step:
        for service in app:
            state = "UP" if service.health_url and services.healthy(service.health_url, timeout=2) else "down"
            steps.log(step, f"{service.name} is {state} while restoring")
        restore_into(backup, target, steps, step)
    with steps.run(VERIFY) as step:
        verify(request, backup, target, steps, step)
    with steps.run(ANALYZE) as step:
        databases.analyze(target)
        steps.log(step, f"analysed {names.restored}")


def verify(request: RecoveryRequest, backup: Backup, target, steps: Steps, step: RecoveryStep) -> None:
    counts = verify_counts(backup, target)
    total = sum(c["restored"] for c in counts.values())
    steps.log(step, f"{len(counts)} tables, {total:,} rows: every count matches the backup's manifest")
    runbook = runbook_counts(target)
    if not runbook:
        steps.log(step, "the runbook's row-count query does not apply: no paws360 tables")
    else:
        for table, rows in runbook.items():
            expected = counts.get(f"paws360.{table}", {}).get("backup")
            if expected != rows:
                raise RestoreFailed(f"the runbook's query counts {rows} rows in {table}, the manifest {expected}")
        steps.log(step, "runbook row counts: " + ", ".join(f"{t} {n:,}" for t, n in runbook.items()))
    request.verification.update({"row_counts": counts, "runbook_counts": runbook, "verified": True})
    request.save(update_fields=["verification"])


def keep_connection_limit(request: RecoveryRequest, names: Names, steps: Steps, step: RecoveryStep) -> None:
    """Production's connection limit on the restored database, now that the restore's own connections are done."""
    limit = databases.copy_connection_limit(request.cluster, names.restored, names.production)
    steps.log(step, f"{names.restored}: connection limit {'none' if limit < 0 else limit}, as {names.production}'s")


def swap(request: RecoveryRequest, names: Names, steps: Steps, step: RecoveryStep) -> None:
    keep_connection_limit(request, names, steps, step)
    request.verification["before_database"] = names.before
    request.save(update_fields=["verification"])
    databases.swap(request.cluster, names.production, names.restored, names.before,
                   lambda line: steps.log(step, line))
    request.result_database = names.production
    request.save(update_fields=["result_database"])
    if databases.exists(request.cluster, names.before):
        databases.register(request.cluster, names.before, ManagedDatabase.Environment.SCRATCH)
        steps.log(step, f"{names.before} stays until someone drops it")
    audit.record("recovery.swap", actor=request.requester or "system", obj=request, target=str(request.cluster),
                 details={"production": names.production, "restored": names.restored, "before": names.before,
                          "backup": request.backup_id})


