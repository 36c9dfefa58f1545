"""Without a scratch cluster that can take it, a verification is refused with the reason: none registered under
SCRATCH_CLUSTER, one not marked scratch, one that does not answer, one older than the backup's server. A refused
verification records nothing on the backup (it is not damaged for want of a scratch cluster) but an audit event, and
nothing is restored anywhere; a backup whose verification is due is then kept, not verified, and /health says so. A
scratch cluster is never a
backup target itself (nor is its WAL archived), and its databases never production."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from backups import freshness, verify
from backups.models import Backup, BackupPolicy
from backups.wal import setup
from portal import pg, scratch
from portal.models import AuditEvent, ManagedCluster, ManagedDatabase
from tests.backups.conftest import QuietReporter, run_now
from tests.clusters import free_port

NONE_REGISTERED = "no scratch cluster is registered as 'no-such-cluster' (SCRATCH_CLUSTER)"


def verify_databases_on(cluster: ManagedCluster) -> list[str]:
    with pg.connect(cluster.target()) as conn:
        return [name for (name,) in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                                                 [verify.SCRATCH_PREFIX])]


def test_without_a_scratch_cluster_a_verification_is_refused_and_the_backup_stays_verified(logical_policy, settings):
    backup = run_now(logical_policy)
    assert backup.verification == Backup.Verification.VERIFIED
    settings.SCRATCH_CLUSTER = "no-such-cluster"

    with pytest.raises(scratch.Unavailable, match=re.escape(NONE_REGISTERED)):
        verify.verify(backup, QuietReporter(backup))

    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.VERIFIED, "not found damaged: not verified again, that is all"
    refused = AuditEvent.objects.get(action="backup.verify", object_id=str(backup.pk), outcome="denied")
    assert refused.details["refused"].startswith(NONE_REGISTERED)
    assert verify_databases_on(logical_policy.cluster) == [], "nothing restored on production instead"
    with pytest.raises(CommandError, match=re.escape(f"backup #{backup.pk} not verified: refused: {NONE_REGISTERED}")):
        call_command("verify_backup", backup.pk)


def test_a_backup_whose_verification_is_due_is_kept_not_verified_and_health_says_so(logical_policy, backup_root,
                                                                                    settings):
    """Better a backup that could not be proven than none: kept, never counted as verified, and a failing check."""
    settings.SCRATCH_CLUSTER = "no-such-cluster"

    backup = run_now(logical_policy)

    assert backup.status == Backup.Status.SUCCEEDED and backup.local_path.exists()
    assert backup.verification == Backup.Verification.PENDING
    assert backup.verification_error.startswith(f"not verified: {NONE_REGISTERED}")
    ok, detail = freshness.state(logical_policy)
    assert not ok and detail.startswith(f"the newest backup, #{backup.pk}, is kept but not verified: {NONE_REGISTERED}")


def test_a_cluster_not_marked_scratch_or_not_answering_is_refused(logical_policy, settings):
    backup = run_now(logical_policy)
    settings.SCRATCH_CLUSTER = logical_policy.cluster.name  # production itself
    with pytest.raises(scratch.Unavailable, match="is not marked as a scratch cluster"):
        verify.verify(backup, QuietReporter(backup))

    down = ManagedCluster.objects.create(name="scratch-down", port=free_port(), scratch=True)
    settings.SCRATCH_CLUSTER = down.name
    with pytest.raises(scratch.Unavailable, match=r"the scratch cluster 'scratch-down' is not reachable: .*refused"):
        verify.verify(backup, QuietReporter(backup))
    assert verify_databases_on(logical_policy.cluster) == []


def test_a_scratch_cluster_older_than_the_backups_server_is_refused(logical_policy, embedded_scratch):
    backup = run_now(logical_policy)
    # As if taken from a PostgreSQL 16 server (this machine has 15 only): the scratch cluster runs 15.
    Backup.objects.filter(pk=backup.pk).update(server_version="16.4")
    backup.refresh_from_db()

    with pytest.raises(scratch.Unavailable, match=r"'embedded-scratch' runs PostgreSQL 15, older than the backup's "
                                                  r"server \(16\): a restore needs a scratch cluster of version 16"):
        verify.verify(backup, QuietReporter(backup))
    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.VERIFIED


def test_a_scratch_cluster_is_never_backed_up_and_its_databases_never_production(embedded_scratch, backup_root,
                                                                                 tmp_path):
    with pytest.raises(setup.ArchivingError, match="is a scratch cluster: its WAL is never archived"):
        setup.configure(embedded_scratch, folder=tmp_path / "wal", log=lambda line: None)
    policy = BackupPolicy(name="scratch", kind=BackupPolicy.Kind.CONFIG, cluster=embedded_scratch)
    with pytest.raises(ValidationError, match="is a scratch cluster"):
        policy.full_clean()
    with pytest.raises(ValidationError, match="its databases are never production"):
        ManagedDatabase(cluster=embedded_scratch, name="paws360").full_clean()
    policy.save()  # as code that skips the form's checks would

    backup = run_now(policy)

    assert backup.status == Backup.Status.FAILED
    assert backup.error == "not taken: embedded-scratch is a scratch cluster, never backed up"
