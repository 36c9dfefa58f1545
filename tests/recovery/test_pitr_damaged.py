"""A damaged base backup, found by `manage.py verify_backup` or by a recovery extracting it: it is marked so (no
longer verified), and a point-in-time recovery with the backup left to the portal takes the next good one (the
older backup) and reaches its target."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backups.models import Backup, BackupPolicy, WalArchive
from portal.models import AuditEvent
from recovery import approvals, pitr
from recovery.models import RecoveryRequest
from tests.backups.test_faults import flip_bytes
from tests.conftest import PROJECT, _test_database_url
from tests.recovery.conftest import run
from tests.recovery.pitr_fixtures import labels, mark_target, pitr_request, take_base_backup

pytestmark = pytest.mark.django_db(transaction=True)


def two_base_backups(archive: WalArchive, policy: BackupPolicy) -> tuple[Backup, Backup, object]:
    """An older and a newer base backup, each verified, and a target after both with archived WAL beyond it."""
    older = take_base_backup(policy)
    target = mark_target(archive, policy)
    newer = Backup.objects.filter(policy=policy).exclude(pk=older.pk).get()
    assert older.finished < newer.finished < target
    return older, newer, target


def damage_wal_tar(backup: Backup) -> None:
    """One byte flipped in the middle of pg_wal.tar: where pg_verifybackup, parsing only the records it needs,
    does not look."""
    victim = backup.local_path / "pg_wal.tar"
    flip_bytes(victim, victim.stat().st_size // 2, count=1)


def verify_backup(pk: int) -> subprocess.CompletedProcess[str]:
    """`manage.py verify_backup <pk>` as a DBA runs it, on the test's database."""
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "CONN_MAX_AGE": "0"}
    return subprocess.run([sys.executable, "manage.py", "verify_backup", str(pk)], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_verify_backup_names_the_damaged_file_and_the_recovery_takes_the_older_backup(archiving, base_policy,
                                                                                       recovery_root, dba):
    older, newer, target = two_base_backups(archiving, base_policy)
    damage_wal_tar(newer)

    result = verify_backup(newer.pk)

    assert result.returncode != 0
    assert f"backup #{newer.pk} failed verification: sha256 of {newer.name}" in result.stderr
    assert "files that differ: pg_wal.tar" in result.stderr
    newer.refresh_from_db()
    assert newer.verification == Backup.Verification.FAILED and "pg_wal.tar" in newer.verification_error
    assert AuditEvent.objects.filter(action="backup.verify", object_id=str(newer.pk), outcome="failure").exists()

    request = run(approvals.submit(pitr_request(archiving, target), dba))

    assert request.status == RecoveryRequest.Status.SUCCEEDED, f"{request.error}\n{request.log}"
    assert request.backup == older
    assert labels(request.result_cluster.target()) == {"before"}


def test_a_base_backup_found_damaged_while_extracting_is_marked_and_the_recovery_falls_back(archiving, base_policy,
                                                                                             recovery_root, dba):
    older, newer, target = two_base_backups(archiving, base_policy)
    damage_wal_tar(newer)

    request = run(approvals.submit(pitr_request(archiving, target), dba))

    assert request.status == RecoveryRequest.Status.SUCCEEDED, f"{request.error}\n{request.log}"
    assert request.backup == older
    assert labels(request.result_cluster.target()) == {"before"}
    steps = {step.name: step.log for step in request.steps.all()}
    assert f"{newer}: ended" in steps[pitr.STEP_BACKUP], "the newer backup was chosen first"
    assert "pg_wal.tar: sha256" in steps[pitr.STEP_EXTRACT]
    assert f"falling back to the next good base backup, {older}: ended" in steps[pitr.STEP_EXTRACT]
    newer.refresh_from_db()
    assert newer.verification == Backup.Verification.FAILED
    assert newer.verification_error.startswith("pg_wal.tar: sha256")
    event = AuditEvent.objects.get(action="backup.damaged", object_id=str(newer.pk))
    assert event.details["found_by"] == f"recovery #{request.pk} extracting it"
    assert pitr.choose_backup(archiving.cluster, target, say=lambda line: None) == older
