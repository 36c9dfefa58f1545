"""One pipeline for every backup, however it was started (the admin, a schedule, `manage.py backup_now`):
take the backup of its kind into its primary location (checked first: see `backups.storage.locations`), verify it
when the policy says so, write its catalog manifest beside it, then what follows a good backup.

A backup whose verification fails is a failed backup: nothing that fails is catalogued as good, nothing after `take`
runs for it, and it keeps nothing under a final name (`backups.leftovers`). A backup whose verification is due and
cannot happen (no scratch cluster can take its restore) is not taken: the run fails with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from backups import leftovers, retention, verify
from backups.models import Backup
from backups.storage import catalog_manifest, locations, offsite
from portal import audit, scratch
from portal.jobs import Reporter

log = logging.getLogger(__name__)

Take = Callable[[Backup, Reporter], None]

# How each kind is taken, registered by BackupsConfig.ready().
TAKERS: dict[str, Take] = {}


# Reasons a backup must not start now, from other apps' work on its cluster (a promotion swapping data
# directories registers one): each returns the reason, or "".
HOLDS: list[Callable[[Backup], str]] = []


class BackupFailed(Exception):
    pass


def taker(kind: str) -> Take:
    if kind not in TAKERS:
        raise BackupFailed(f"{kind} backups cannot be taken by this portal")
    return TAKERS[kind]


def perform(backup: Backup, reporter: Reporter) -> None:
    """The work of one backup job (`portal.jobs.run_job` records its outcome)."""
    take = taker(backup.kind)
    if backup.cluster.scratch:
        raise BackupFailed(f"not taken: {backup.cluster} is a scratch cluster, never backed up")
    for hold in HOLDS:
        if reason := hold(backup):
            raise BackupFailed(f"not taken: {reason}")
    try:  # every kind writes under the primary location's folder: it must be there, and be that location's
        locations.check_ready(backup.policy.primary_location())
    except locations.LocationError as exc:
        raise BackupFailed(f"not taken: {exc}") from exc
    verify_now = backup.policy.is_verification_due()
    with leftovers.removed_unless_good(backup, reporter):
        take(backup, reporter)
        if reporter.cancel.is_set():
            return
        if not verify_now:
            Backup.objects.filter(pk=backup.pk).update(verification=Backup.Verification.SKIPPED)
            reporter.log(f"verification skipped: the policy verifies every {backup.policy.verify_every} backups")
        elif backup.kind in verify.VERIFIERS and not verified(backup, reporter):
            raise BackupFailed(f"verification failed: {Backup.objects.get(pk=backup.pk).verification_error}")
        reporter.log(f"catalog manifest written: {catalog_manifest.write(backup)}")
    after_success(backup, reporter)


def verified(backup: Backup, reporter: Reporter) -> bool:
    """Verified, or could not be verified now (no scratch cluster can take the restore): a backup that cannot be
    proven restorable is still better than none, so it is kept, not verified, with the reason — /health reports it
    (`backups.freshness`) and it never counts as a verified one. False only when the restore showed it damaged."""
    try:
        return verify.verify(backup, reporter, actor=backup.triggered_by)
    except scratch.Unavailable as exc:
        reason = f"{verify.REFUSED}{exc}"
        Backup.objects.filter(pk=backup.pk).update(verification=Backup.Verification.PENDING,
                                                   verification_error=reason)
        reporter.log(f"kept, NOT verified: {reason}")
        return True


def after_success(backup: Backup, reporter: Reporter) -> None:
    """What follows a good (taken and, when due, verified) backup: copies to the policy's other locations,
    then retention. Never reached for a failed backup, so a failed run (a full disk...) expires nothing.
    Neither makes the backup fail: a failed copy is recorded on its BackupCopy row, a failed retention run in
    the audit trail, and the hourly retention run tries again."""
    reporter.log("after success: offsite copies and retention")
    offsite.copy_to_locations(backup, reporter, actor=backup.triggered_by or "system")
    try:
        applied = retention.apply(backup.policy, actor=f"retention after backup {backup.pk}")
    except Exception as exc:
        log.exception("retention after backup %s failed", backup.pk)
        reporter.log(f"retention failed (the hourly run will retry): {exc}")
        audit.record("retention.apply", obj=backup.policy, target=str(backup.policy),
                     outcome=audit.Outcome.FAILURE, details={"error": str(exc), "after_backup": backup.pk})
    else:
        reporter.log(f"retention: {len(applied.expired)} backup(s) expired")
