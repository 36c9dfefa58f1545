"""Point-in-time recovery of a real cluster that archives its WAL: the data at the target, and what is refused."""

from __future__ import annotations

import os
import pwd
import stat
from datetime import UTC, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from backups.models import Backup
from backups.wal import walarchive
from backups.wal.window import recoverable_window
from portal import pg
from portal.jobs import run_job
from portal.models import AuditEvent, ManagedCluster
from recovery import approvals, pitr
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.perform import perform
from tests.clusters import RUN_AS
from tests.recovery.pitr_fixtures import labels, pitr_request

pytestmark = pytest.mark.django_db(transaction=True)


def run(request: RecoveryRequest) -> RecoveryRequest:
    run_job(RecoveryRequest, request.pk, perform)
    request.refresh_from_db()
    return request


def step_states(request: RecoveryRequest) -> dict[str, str]:
    return dict(request.steps.values_list("name", "status"))


def test_it_recovers_to_the_target_with_the_row_before_and_without_the_row_after(archiving, marked_target,
                                                                                  recovery_root, dba):
    chicago = marked_target.astimezone(ZoneInfo("America/Chicago"))  # input in any time zone
    request = approvals.submit(pitr_request(archiving, chicago), dba)
    assert request.destination_name == f"scratch-pitr-{marked_target.astimezone(UTC):%Y%m%d-%H%M%S}"
    request = run(request)
    assert request.status == RecoveryRequest.Status.SUCCEEDED, f"{request.error}\n{request.log}"
    assert list(request.steps.values_list("name", flat=True)) == pitr.PLAN
    assert set(step_states(request).values()) == {RecoveryStep.Status.SUCCEEDED}

    recovered = request.result_cluster
    assert recovered.name == request.destination_name and recovered.reachable and recovered.in_recovery is False
    assert recovered.port != archiving.cluster.port and recovered.control == ManagedCluster.Control.PG_CTL
    assert labels(recovered.target()) == {"before"}
    assert labels(archiving.cluster.target()) == {"before", "after"}  # the source, untouched

    data = Path(recovered.data_directory)
    assert data.parent.parent == recovery_root / "clusters" and data != Path(archiving.cluster.data_directory)
    info = data.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == pwd.getpwnam(RUN_AS).pw_uid
    auto = (data / "postgresql.auto.conf").read_text()
    written = marked_target.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
    assert f"recovery_target_time = '{written}'" in auto and written.endswith("+00:00")
    assert "recovery_target_action = 'pause'" in auto and "archive_mode = 'off'" in auto
    passfile = Path(recovered.passfile)
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600 and f":{recovered.port}:" in passfile.read_text()

    verification = request.verification
    assert verification["last_replayed_commit"] < pitr.utc(marked_target) < verification["stopped_before_commit_at"]
    assert 0 < request.rto_seconds < 600
    assert 0.5 < request.rpo_seconds < 10  # the target against the newest archived commit ("after", 1 s later)
    assert request.backup.verification == Backup.Verification.VERIFIED
    assert AuditEvent.objects.filter(action="recovery.pitr.register", object_id=str(recovered.pk)).exists()
    with pg.connect(archiving.cluster.target()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    assert not (Path(archiving.cluster.data_directory) / "recovery.signal").exists()


def test_a_target_outside_the_window_is_refused_with_the_window_at_submit_and_at_run_time(archiving, marked_target,
                                                                                          recovery_root, dba):
    window = recoverable_window(archiving.cluster)
    stated = f"the recoverable window {pitr.utc(window.start)} … {pitr.utc(window.end)}"
    for outside in (window.start - timedelta(seconds=30), window.end + timedelta(minutes=5)):
        with pytest.raises(ValidationError) as refused:
            approvals.submit(pitr_request(archiving, outside), dba)
        message = refused.value.message_dict["target_time"][0]
        assert message.startswith(f"{pitr.utc(outside)} is outside {stated}"), message
    # A request that reached the queue some other way is refused again when it runs.
    queued = pitr_request(archiving, window.end + timedelta(minutes=5), status=RecoveryRequest.Status.QUEUED)
    queued.save()
    queued = run(queued)
    assert queued.status == RecoveryRequest.Status.FAILED and stated in queued.error
    states = step_states(queued)
    assert states[pitr.STEP_WINDOW] == RecoveryStep.Status.FAILED
    assert states[pitr.STEP_EXTRACT] == RecoveryStep.Status.SKIPPED
    assert not queued.work_directory and not (recovery_root / "clusters").exists()


def test_a_segment_that_vanished_after_the_request_is_refused_when_it_runs(archiving, marked_target, recovery_root,
                                                                           dba):
    request = approvals.submit(pitr_request(archiving, marked_target), dba)
    newest = archiving.segments.filter(kind="segment").order_by("-segno").first()
    os.unlink(walarchive.stored(archiving.folder, newest.name))
    request = run(request)
    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error.startswith(f"{pitr.utc(marked_target)} cannot be reached: WAL {newest.name} is missing; "
                                    "recoverable window: ") and request.result_cluster is None


def test_a_corrupt_base_backup_is_refused_with_the_reason(archiving, marked_target, recovery_root, dba):
    backup = Backup.objects.get(cluster=archiving.cluster)
    damaged = backup.local_path / "base.tar.zst"
    with open(damaged, "r+b") as file:
        file.seek(damaged.stat().st_size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))
    request = run(approvals.submit(pitr_request(archiving, marked_target), dba))
    assert request.status == RecoveryRequest.Status.FAILED
    assert "base.tar.zst: sha256" in request.error and "the backup is damaged; refused" in request.error
    assert step_states(request)[pitr.STEP_EXTRACT] == RecoveryStep.Status.FAILED
    assert not Path(request.work_directory).exists()  # nothing half-built left behind
    assert ManagedCluster.objects.filter(name=request.destination_name).count() == 0


@pytest.mark.parametrize(("state", "reason"), [
    (Backup.Verification.PENDING, "is not verified (not verified yet)"),
    (Backup.Verification.FAILED, "failed verification: checksum mismatch for file"),
])
def test_an_unverified_or_failed_base_backup_chosen_is_refused_with_the_reason(archiving, marked_target, recovery_root,
                                                                               dba, state, reason):
    backup = Backup.objects.get(cluster=archiving.cluster)
    error = 'checksum mismatch for file "base/1/1259"' if state == Backup.Verification.FAILED else ""
    Backup.objects.filter(pk=backup.pk).update(verification=state, verification_error=error)
    with pytest.raises(ValidationError) as refused:
        approvals.submit(pitr_request(archiving, marked_target, backup=backup), dba)
    assert reason in refused.value.message_dict["backup"][0]
    queued = pitr_request(archiving, marked_target, backup=backup, status=RecoveryRequest.Status.QUEUED)
    queued.save()
    queued = run(queued)
    assert queued.status == RecoveryRequest.Status.FAILED and reason in queued.error
    assert step_states(queued)[pitr.STEP_WINDOW] == RecoveryStep.Status.FAILED
    assert not queued.work_directory


def test_two_recoveries_into_the_same_destination_are_refused(archiving, marked_target, recovery_root, dba, dba2):
    first = approvals.submit(pitr_request(archiving, marked_target), dba)
    with pytest.raises(approvals.Refused, match=f"already restoring into '{first.destination_name}'"):
        approvals.submit(pitr_request(archiving, marked_target), dba2)
    earlier = marked_target - timedelta(milliseconds=300)
    named = pitr_request(archiving, earlier, destination_name=first.destination_name)
    with pytest.raises(approvals.Refused, match=f"#{first.pk} is already restoring into"):
        approvals.submit(named, dba2)


def test_replacing_production_and_a_name_that_is_not_a_slug_are_refused(archiving, marked_target, recovery_root, dba):
    with pytest.raises(ValidationError) as refused:
        approvals.submit(pitr_request(archiving, marked_target, destination=RecoveryRequest.Destination.REPLACE), dba)
    assert "Make this cluster production" in refused.value.message_dict["destination"][0]
    with pytest.raises(ValidationError) as refused:
        approvals.submit(pitr_request(archiving, marked_target, destination_name="../../etc"), dba)
    assert "letters, digits" in refused.value.message_dict["destination_name"][0]
    assert not RecoveryRequest.objects.exists()
