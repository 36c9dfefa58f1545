"""Copies of a backup in every location of its policy: checked, recorded per location, failures with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from backups import files
from backups.models import Backup, BackupCopy, StorageLocation
from backups.storage import backends, locations, offsite
from portal.jobs import reporting
from portal.models import AuditEvent
from tests.backups.conftest import BUCKET, catalog, local_location, run_now

pytestmark = pytest.mark.django_db
State = BackupCopy.State


def second_disk(root: Path) -> StorageLocation:
    return local_location("second-disk", root)


def with_locations(policy, *locations: StorageLocation):
    policy.locations.set([StorageLocation.default_local(), *locations])
    return policy


def test_it_copies_a_backup_to_every_location_and_records_each(policy, s3_location, s3_server, tmp_path: Path):
    with_locations(policy, second_disk(tmp_path / "second"), s3_location)
    backup = catalog(policy)
    copies = {c.location.name: c for c in offsite.copy_to_locations(backup, actor="test")}
    assert set(copies) == {"local", "second-disk", "offsite"}
    for copy in copies.values():
        copy.refresh_from_db()
        assert (copy.state, copy.size_bytes, copy.sha256, copy.error) == (
            State.PRESENT, backup.size_bytes, backup.sha256, "")
        assert copy.key == backup.path and copy.copied_at
    assert copies["second-disk"].checked_at and copies["offsite"].checked_at
    assert files.sha256_of(tmp_path / "second" / backup.path) == backup.sha256
    s3_bytes = s3_server.client().get_object(Bucket=BUCKET, Key=f"paws360/backups/{backup.path}")["Body"].read()
    assert s3_bytes == backup.local_path.read_bytes()
    events = AuditEvent.objects.filter(action="backup.copy", object_id=str(backup.pk))
    assert sorted(e.details["location"] for e in events) == ["offsite", "second-disk"]
    assert {e.outcome for e in events} == {"success"}
    assert not backup.leases.exists()  # the copy's lease was released


def test_a_copy_already_present_is_not_made_again(policy, tmp_path: Path):
    with_locations(policy, second_disk(tmp_path / "second"))
    backup = catalog(policy)
    offsite.copy_to_locations(backup)
    offsite.copy_to_locations(backup)
    assert AuditEvent.objects.filter(action="backup.copy").count() == 1


def test_a_folder_backup_is_copied_whole(policy, s3_location, tmp_path: Path):
    with_locations(policy, second_disk(tmp_path / "second"), s3_location)
    backup = catalog(policy, fmt="directory")
    copies = offsite.copy_to_locations(backup)
    assert [c.state for c in copies] == [State.PRESENT] * 3
    assert files.tree_digest(tmp_path / "second" / backup.path)[1] == backup.sha256
    assert backends.for_location(s3_location).check(backup.path) == backends.Stat(backup.size_bytes, backup.sha256)


def test_a_full_disk_records_the_copy_failed_with_no_partial_file(policy, tiny_fs: Path):
    with_locations(policy, second_disk(tiny_fs))
    backup = catalog(policy)
    primary_before = backup.local_path.read_bytes()
    primary, copy = offsite.copy_to_locations(backup, actor="test")
    assert primary.state == State.PRESENT
    assert copy.state == State.FAILED and "No space left on device" in copy.error
    assert list(tiny_fs.rglob("*.dump")) == [] and [p.name for p in tiny_fs.rglob("*") if p.is_file()] == [
        locations.MARKER]
    assert backup.local_path.read_bytes() == primary_before
    backup.refresh_from_db()
    assert backup.is_good  # the backup stays good; the admin shows its missing copy
    event = AuditEvent.objects.get(action="backup.copy", object_id=str(backup.pk))
    assert event.outcome == "failure" and "No space left on device" in event.details["error"]


def test_bytes_flipped_in_a_stored_copy_fail_its_check_and_a_retry_repairs_it(policy, tmp_path: Path):
    with_locations(policy, second_disk(tmp_path / "second"))
    backup = catalog(policy)
    _, copy = offsite.copy_to_locations(backup)
    stored = tmp_path / "second" / backup.path
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0x01
    stored.write_bytes(bytes(data))

    copy = offsite.check_copy(copy, actor="test")
    copy.refresh_from_db()
    assert copy.state == State.FAILED and "checksum mismatch" in copy.error
    assert AuditEvent.objects.filter(action="backup.copy.check", outcome="failure").count() == 1

    offsite.copy_to_locations(backup)
    copy.refresh_from_db()
    assert copy.state == State.PRESENT and files.sha256_of(stored) == backup.sha256


def test_a_corrupt_primary_is_not_spread_to_other_locations(policy, s3_location, tmp_path: Path):
    with_locations(policy, second_disk(tmp_path / "second"), s3_location)
    backup = catalog(policy)
    data = bytearray(backup.local_path.read_bytes())
    data[-100] ^= 0x01
    backup.local_path.write_bytes(bytes(data))
    _, *copies = offsite.copy_to_locations(backup)
    assert [c.state for c in copies] == [State.FAILED, State.FAILED]
    assert all("checksum mismatch" in c.error for c in copies)
    assert not (tmp_path / "second" / backup.path).exists()
    assert backends.for_location(s3_location).stat(backup.path) is None


def test_a_stopped_s3_server_records_the_copy_failed_and_a_retry_succeeds(policy, s3_location, s3_server):
    with_locations(policy, s3_location)
    backup = catalog(policy)
    s3_server.stop()
    _, copy = offsite.copy_to_locations(backup, actor="test")
    assert copy.state == State.FAILED
    assert "Could not connect to the endpoint URL" in copy.error and s3_server.url in copy.error

    s3_server.start()  # back, empty (moto keeps nothing across restarts): the bucket is made again
    s3_server.create_bucket()
    _, copy = offsite.copy_to_locations(backup, actor="test")
    assert copy.state == State.PRESENT
    assert backends.for_location(s3_location).check(backup.path).sha256 == backup.sha256
    outcomes = list(AuditEvent.objects.filter(action="backup.copy").order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["failure", "success"]


class StopServerMidway:
    """The run's reporter, standing in for the pipeline's: it stops the S3 server once bytes are on the wire."""

    def __init__(self, server) -> None:
        self.server, self.lines, self.stopped_at = server, [], None

    def progress(self, done: int, total: int | None, note: str) -> None:
        if self.stopped_at is None:
            self.stopped_at = done
            self.server.stop()

    def log(self, line: str) -> None:
        self.lines.append(line)


def test_an_s3_server_stopped_during_the_upload_records_the_copy_failed(policy, s3_location, s3_server):
    with_locations(policy, s3_location)
    backup = catalog(policy, compress=0)  # uncompressed: several chunks on the wire
    reporter = StopServerMidway(s3_server)
    _, copy = offsite.copy_to_locations(backup, reporter, actor="test")  # type: ignore[arg-type]
    assert reporter.stopped_at is not None and reporter.stopped_at < backup.size_bytes
    assert copy.state == State.FAILED and copy.error.startswith("upload to s3://paws360-offsite/paws360/backups/")
    assert "Connection" in copy.error or "connect" in copy.error
    assert "copy to offsite: failed" in reporter.lines[-1]
    assert files.sha256_of(backup.local_path) == backup.sha256


def test_a_copy_being_made_elsewhere_is_not_claimed_twice(policy, tmp_path: Path):
    location = second_disk(tmp_path / "second")
    backup = catalog(policy)
    copy = BackupCopy.objects.create(backup=backup, location=location, key=backup.path)
    assert offsite.claim(copy) is True
    assert offsite.claim(copy) is False


def test_only_a_good_backup_is_copied(policy):
    backup = catalog(policy, status="failed")
    with pytest.raises(ValueError, match="not a whole backup"):
        offsite.copy_to_locations(backup)


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_copies_its_backup_before_finishing_with_progress(policy, tmp_path: Path):
    with_locations(policy, second_disk(tmp_path / "second"))
    backup = catalog(policy)
    Backup.objects.filter(pk=backup.pk).update(status=Backup.Status.RUNNING)  # still inside the run
    backup.refresh_from_db()
    with reporting(backup) as reporter:
        _, copy = offsite.copy_to_locations(backup, reporter, actor="schedule:nightly")
    assert copy.state == State.PRESENT
    backup.refresh_from_db()
    assert (backup.progress_done, backup.progress_total) == (backup.size_bytes, backup.size_bytes)
    assert backup.progress_note == "copying to second-disk"
    assert "copy to second-disk: present" in backup.log


def test_a_logical_backups_globals_go_with_it_and_leave_with_it(logical_policy, tmp_path: Path):
    """The cluster's globals, dumped beside a logical backup, are copied with it and deleted with it."""
    second = second_disk(tmp_path / "second")
    with_locations(logical_policy, second)
    backup = run_now(logical_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    (globals_path, globals_sha), = backup.companions()
    copied = Path(second.root) / globals_path
    assert files.sha256_of(copied) == globals_sha
    copy = backup.copies.get(location=second)
    assert offsite.delete_copy(copy, actor="test", reason="test")
    assert not copied.exists() and not (Path(second.root) / backup.path).exists()
