"""A gap made for real in a WAL archive (archived segments removed, the catalog sees them vanish): a target beyond it
is refused naming the missing segments (the first and the last) and the recoverable windows on either side."""

from __future__ import annotations

import os

import pytest
from django.core.exceptions import ValidationError

from backups.models import WalArchive, WalSegment
from backups.wal import catalog as walcatalog
from backups.wal import walarchive
from backups.wal.window import recoverable_window
from recovery import approvals, pitr
from recovery.models import RecoveryRequest, RecoveryStep
from tests.backups.conftest import switch_wal
from tests.conftest import wait_for
from tests.recovery.conftest import run
from tests.recovery.pitr_fixtures import archive_now, pitr_request, take_base_backup

pytestmark = pytest.mark.django_db(transaction=True)


def cut_gap(archive: WalArchive) -> tuple[str, str, WalSegment]:
    """Four segments with commits archived and catalogued, then every segment between the first and the last of
    them removed from the archive folder: the first and last missing names, and the segment after the gap."""
    source = archive.cluster.target()
    names = [switch_wal(source, rows=10) for _ in range(4)]
    wait_for(lambda: all(walarchive.stored(archive.folder, n) for n in names), message="the segments archived")
    walcatalog.scan(archive)
    first, last = (walarchive.parse_segment(n, archive.segment_size)[1] for n in (names[0], names[-1]))
    missing = list(archive.segments.filter(kind="segment", segno__gt=first, segno__lt=last).order_by("segno"))
    assert len(missing) >= 2
    for segment in missing:
        os.unlink(archive.folder / segment.stored_name)
    assert walcatalog.scan(archive).vanished == len(missing)
    return missing[0].name, missing[-1].name, archive.segments.get(name=names[-1])


def window(archive: WalArchive, index: int) -> str:
    covered = recoverable_window(archive.cluster).ranges[index]
    return f"{pitr.utc(covered.start)} … {pitr.utc(covered.end)}"


def refusal(archive: WalArchive, dba, target) -> str:
    with pytest.raises(ValidationError) as refused:
        approvals.submit(pitr_request(archive, target), dba)
    return refused.value.message_dict["target_time"][0]


def test_a_target_beyond_a_gap_is_refused_naming_the_gap_and_the_windows_on_either_side(archiving, base_policy,
                                                                                       recovery_root, dba):
    take_base_backup(base_policy)
    first_missing, last_missing, after_gap = cut_gap(archiving)
    target = after_gap.last_commit_at  # WAL of this moment is archived, but replay cannot cross the gap to it
    before_gap = recoverable_window(archiving.cluster).ranges
    assert len(before_gap) == 1 and before_gap[0].end < target

    assert refusal(archiving, dba, target) == (
        f"{pitr.utc(target)} cannot be reached: WAL from {first_missing} to {last_missing} is missing; "
        f"recoverable window: {window(archiving, 0)}")

    second = take_base_backup(base_policy)  # a new window starts after the gap
    archive_now(archiving)
    ranges = recoverable_window(archiving.cluster).ranges
    assert len(ranges) == 2 and ranges[1].start == second.finished > target
    expected = (f"{pitr.utc(target)} cannot be reached: WAL from {first_missing} to {last_missing} is missing; "
                f"recoverable windows: {window(archiving, 0)} and {window(archiving, 1)}")
    assert refusal(archiving, dba, target) == expected

    queued = pitr_request(archiving, target, status=RecoveryRequest.Status.QUEUED)  # reached the queue anyway
    queued.save()
    queued = run(queued)
    assert queued.status == RecoveryRequest.Status.FAILED and queued.error == expected
    assert queued.steps.get(name=pitr.STEP_WINDOW).status == RecoveryStep.Status.FAILED
