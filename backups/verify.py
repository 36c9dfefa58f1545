"""Verification that means restorable.

A logical backup is `verified` only after its checksum matched, it was restored into a scratch database on the
scratch cluster (never on the cluster it came from: `portal.scratch`) and every table's row count matched the counts
taken in the dump's own snapshot; the scratch database is dropped whatever happens. Without a scratch cluster that
can take it, the verification is refused (`scratch.Unavailable`): nothing is recorded on the backup but an audit
event. An archive (configuration, application data) is verified by reading every member back and comparing it with
the checksum manifest. The backup is leased while it is verified, so retention leaves it.
A backup found damaged at another time (`mark_damaged`) is recorded the same way: verification `failed`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.utils import timezone

from backups import leases
from backups.kinds import archive
from backups.kinds.logical import connect_or_fail
from backups.models import Backup
from backups.restore import ONTO_SCRATCH, check_checksum, restore_logical
from backups.rowcounts import count_rows, user_tables
from backups.storage import catalog_manifest
from portal import audit, pg, scratch
from portal.jobs import Reporter
from portal.models import ManagedCluster

log = logging.getLogger(__name__)
SCRATCH_PREFIX = "portal_verify_"


class VerificationFailed(Exception):
    pass


def compare_counts(expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    """Every difference between the snapshot's row counts and the restored ones, in words."""
    differences = []
    for table in sorted(expected.keys() | restored.keys()):
        if table not in restored:
            differences.append(f"{table}: {expected[table]} rows in the backup's snapshot, table missing after restore")
        elif table not in expected:
            differences.append(f"{table}: not in the backup's manifest, {restored[table]} rows restored")
        elif expected[table] != restored[table]:
            differences.append(f"{table}: {expected[table]} rows in the backup's snapshot, {restored[table]} restored")
    return differences


def restored_counts(target: pg.Target) -> dict[str, int]:
    with connect_or_fail(target, purpose="verify-count", statement_timeout_ms=0) as conn:
        return count_rows(conn, user_tables(conn))


def scratch_prefix(backup: Backup) -> str:
    """What the names of this portal's scratch databases verifying `backup` start with."""
    return scratch.key_prefix(SCRATCH_PREFIX, backup.pk)


def drop_scratch_of(backup: Backup) -> list[str]:
    """The scratch databases a dead run's verification of `backup` left behind, dropped from the scratch clusters:
    their names."""
    prefix = scratch_prefix(backup)
    return scratch.drop_matching(prefix, re.compile(rf"{re.escape(prefix)}[0-9a-f]{{8}}"))


def scratch_cluster_for(backup: Backup) -> ManagedCluster:
    """The scratch cluster that verifies `backup` (a logical one), sampled now; raises scratch.Unavailable."""
    return scratch.choose(backup.cluster, backup.server_version)




def verify_logical(backup: Backup, reporter: Reporter) -> str:
    assert backup.database is not None
    cluster = scratch_cluster_for(backup)
    check_checksum(backup)
    reporter.log("verification: checksum matches")
    name = scratch.database_name(SCRATCH_PREFIX, backup.pk)
    target = scratch.create_database(cluster, name)
    try:
        reporter.log(f"verification: restoring into scratch database {name} on the scratch cluster {cluster}")
        restore_logical(backup, target, reporter, jobs=backup.policy.jobs, extra_args=ONTO_SCRATCH)
        counts = restored_counts(target)
    finally:
        scratch.drop_database(cluster, name)
        reporter.log(f"verification: dropped {name}")
    differences = compare_counts(backup.manifest.get("tables", {}), counts)
    if differences:
        raise VerificationFailed("row counts differ after restore: " + "; ".join(differences))
    return f"restored {sum(counts.values())} rows of {len(counts)} tables; every count matches the snapshot"


def verify_archive(backup: Backup, reporter: Reporter) -> str:
    check_checksum(backup)
    checked = archive.check_archive(backup.local_path, backup.manifest.get("files", {}), encrypted=backup.encrypted)
    return f"read back {checked} files; every sha256 matches the manifest"


# kind -> how a backup of that kind is shown restorable; registered by BackupsConfig.ready().
# What a backup's verification_error starts with when no scratch cluster could take its restore: kept, not verified.
REFUSED = "not verified: "

VERIFIERS: dict[str, Callable[[Backup, Reporter], str]] = {}


def _record(backup: Backup, state: str, error: str, seconds: float | None) -> None:
    backup.verification, backup.verification_error, backup.verification_seconds = state, error[:10_000], seconds
    backup.verified_at = timezone.now()
    backup.save(update_fields=["verification", "verification_error", "verification_seconds", "verified_at"])
    catalog_manifest.refresh(backup)


def mark_damaged(backup: Backup, reason: str, *, found_by: str, actor: str = "system") -> None:
    """`backup` was found damaged outside a verification (a recovery's checksum check or extraction): it is no
    longer verified (verification `failed`, with the reason and when), so no automatic choice takes it again, and
    an audit event says who found what."""
    _record(backup, Backup.Verification.FAILED, reason, backup.verification_seconds)
    log.warning("backup %s found damaged by %s: %s", backup.pk, found_by, reason)
    audit.record("backup.damaged", actor=actor, obj=backup, target=str(backup), outcome=audit.Outcome.FAILURE,
                 details={"found_by": found_by, "error": backup.verification_error})


def verify(backup: Backup, reporter: Reporter, *, actor: str = "system") -> bool:
    """Verify `backup` now, holding a lease on it; record `verified` or `failed` with the reason. True if verified.
    Raises scratch.Unavailable when no scratch cluster can take its restore: refused, the backup's verification as
    it was (a backup is not damaged for want of a scratch cluster), the refusal an audit event."""
    verifier = VERIFIERS.get(backup.kind)
    if verifier is None:
        raise VerificationFailed(f"no verification for {backup.get_kind_display()} backups here")
    before = Backup.objects.get(pk=backup.pk).verification
    Backup.objects.filter(pk=backup.pk).update(verification=Backup.Verification.VERIFYING)
    reporter.progress(note="verifying")
    started = time.monotonic()
    with leases.hold(backup, "verification"):
        try:
            summary = verifier(backup, reporter)
        except scratch.Unavailable as exc:
            Backup.objects.filter(pk=backup.pk).update(verification=before)
            reporter.log(f"verification refused: {exc}")
            audit.record("backup.verify", actor=actor, obj=backup, target=str(backup),
                         outcome=audit.Outcome.DENIED, details={"refused": str(exc)})
            raise
        except Exception as exc:  # any failure means "not shown restorable", with the reason
            log.info("backup %s failed verification: %s", backup.pk, exc)
            _record(backup, Backup.Verification.FAILED, str(exc) or type(exc).__name__, time.monotonic() - started)
            reporter.log(f"verification FAILED: {backup.verification_error}")
            audit.record("backup.verify", actor=actor, obj=backup, target=str(backup),
                         outcome=audit.Outcome.FAILURE, details={"error": backup.verification_error})
            return False
    _record(backup, Backup.Verification.VERIFIED, "", time.monotonic() - started)
    reporter.log(f"verified in {backup.verification_seconds:.1f}s: {summary}")
    audit.record("backup.verify", actor=actor, obj=backup, target=str(backup),
                 details={"seconds": backup.verification_seconds, "summary": summary})
    return True
