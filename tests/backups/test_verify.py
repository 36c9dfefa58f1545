"""Verification: leased while it runs, every Nth backup when the policy says so, its cost recorded, and a
verification command for a backup taken earlier."""

from __future__ import annotations

import threading

import pytest
from django.core.management import CommandError, call_command

from backups import leases, verify
from backups.models import Backup, BackupPolicy
from portal import pg
from portal.models import AuditEvent
from tests.backups.conftest import QuietReporter, in_thread, run_now


@pytest.mark.django_db(transaction=True)
def test_a_backup_is_leased_while_it_is_verified_and_released_after(logical_policy, embedded_scratch):
    backup = run_now(logical_policy)
    seen_leased = []
    worker = threading.Thread(target=in_thread(verify.verify), args=(backup, QuietReporter(backup)))
    with pg.connect(embedded_scratch.target()) as conn:
        worker.start()
        while worker.is_alive():  # the scratch database exists while the restore and the counts run
            scratch = conn.execute("SELECT count(*) FROM pg_database WHERE starts_with(datname, %s)",
                                   [verify.scratch_prefix(backup)]).fetchone()[0]
            if scratch:
                seen_leased.append(leases.is_leased(backup))
    worker.join()
    assert seen_leased and all(seen_leased)
    assert not leases.is_leased(backup)
    backup.refresh_from_db()
    assert backup.verification == Backup.Verification.VERIFIED


def test_a_policy_may_verify_every_nth_backup(embedded_cluster, backup_root):
    policy = BackupPolicy.objects.create(name="config", kind="config", cluster=embedded_cluster, verify_every=2)
    states = [run_now(policy).verification for _ in range(3)]
    assert states == ["verified", "skipped", "verified"]


def test_the_verification_cost_and_an_audit_event_are_recorded(logical_policy):
    backup = run_now(logical_policy)
    assert backup.verification_seconds > 0 and backup.verified_at is not None
    event = AuditEvent.objects.get(action="backup.verify", object_id=str(backup.pk))
    assert event.outcome == "success" and "every count matches" in event.details["summary"]


def test_the_compare_says_what_differs():
    assert verify.compare_counts({"a.t": 5, "a.gone": 1}, {"a.t": 4, "a.new": 2}) == [
        "a.gone: 1 rows in the backup's snapshot, table missing after restore",
        "a.new: not in the backup's manifest, 2 rows restored",
        "a.t: 5 rows in the backup's snapshot, 4 restored",
    ]


@pytest.mark.django_db(transaction=True)
def test_verify_backup_verifies_again_or_says_why_not(logical_policy, capsys):
    backup = run_now(logical_policy)
    call_command("verify_backup", backup.pk)
    assert f"backup #{backup.pk} verified in" in capsys.readouterr().out
    (backup.local_path / "toc.dat").write_bytes(b"not a toc")
    with pytest.raises(CommandError, match="failed verification: sha256 of"):
        call_command("verify_backup", backup.pk)
    with pytest.raises(CommandError, match="no good backup #999999"):
        call_command("verify_backup", 999999)
