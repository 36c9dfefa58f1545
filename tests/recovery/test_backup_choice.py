"""Which backup a recovery restores: the newest good one by default; a corrupt or unverified one chosen by name is
refused with the reason when the recovery runs (the request form refuses it too: test_request_admin.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import Backup
from portal.models import AuditEvent
from recovery import choose
from recovery.models import RecoveryRequest
from tests.backups.conftest import catalog
from tests.backups.test_faults import flip_bytes, largest_file
from tests.recovery.conftest import HealthWatch, database_names, query, run, submit


@pytest.fixture
def older(logical_policy, good_backup) -> Backup:
    """A verified copy of the same dump, taken a day earlier."""
    backup = catalog(logical_policy, days_ago=1, source=good_backup)
    backup.manifest = good_backup.manifest
    backup.save()
    return backup


def test_the_default_is_the_newest_good_backup(sample_database, logical_policy, good_backup, older):
    catalog(logical_policy, verification=Backup.Verification.PENDING)
    catalog(logical_policy, verification=Backup.Verification.FAILED)
    catalog(logical_policy, status=Backup.Status.FAILED)
    expired = catalog(logical_policy, source=good_backup)
    Backup.objects.filter(pk=expired.pk).update(expired_at=timezone.now(), created=timezone.now() + timedelta(1))

    assert list(choose.good_backups(sample_database)) == [good_backup, older]
    assert choose.resolve(None, sample_database, None, say=print) == good_backup


def test_a_newest_backup_whose_files_changed_is_passed_over_with_the_reason(sample_database, good_backup, older):
    victim = largest_file(good_backup)
    flip_bytes(victim, victim.stat().st_size // 2)
    said: list[str] = []

    assert choose.resolve(None, sample_database, None, said.append) == older
    assert len(said) == 1 and said[0].startswith(f"passed over: backup #{good_backup.pk}")
    assert "is corrupt: sha256 of" in said[0]


@pytest.mark.django_db(transaction=True)
def test_a_corrupt_backup_chosen_is_refused_before_anything_is_stopped(sample_database, good_backup, api, operator,
                                                                       dba):
    request = submit(sample_database, operator, dba, backup=good_backup,
                     destination=RecoveryRequest.Destination.REPLACE)
    victim = largest_file(good_backup)
    flip_bytes(victim, victim.stat().st_size // 2)
    before = query(sample_database, "SELECT count(*) FROM paws360.students")

    with HealthWatch(api.health_url) as health:
        request = run(request)

    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error.startswith(f"backup #{good_backup.pk} ({good_backup}) is corrupt: sha256 of")
    assert "catalogued" in request.error
    good_backup.refresh_from_db()
    assert good_backup.verification == Backup.Verification.FAILED, "found damaged: no longer verified"
    assert health.seen == ["up"], "the services were never stopped"
    assert database_names(sample_database) == {sample_database.name}
    assert query(sample_database, "SELECT count(*) FROM paws360.students") == before


@pytest.mark.django_db(transaction=True)
def test_an_unverified_backup_chosen_is_refused_with_the_reason(sample_database, logical_policy, good_backup,
                                                                operator):
    unverified = catalog(logical_policy, source=good_backup, verification=Backup.Verification.PENDING)
    request = run(submit(sample_database, operator, backup=unverified))

    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error == (f"backup #{unverified.pk} ({unverified}) is not verified by restore (not verified yet);"
                             " choose a verified one")
    assert database_names(sample_database) == {sample_database.name}


@pytest.mark.django_db(transaction=True)
def test_a_backup_found_damaged_by_a_recovery_is_marked_and_the_next_choice_is_the_previous_good_one(
        sample_database, good_backup, older, operator):
    victim = largest_file(good_backup)
    flip_bytes(victim, victim.stat().st_size // 2)
    assert choose.newest(sample_database) == good_backup, "the catalogue alone does not know yet"

    request = run(submit(sample_database, operator, destination=RecoveryRequest.Destination.BESIDE))

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert request.backup == older, "the automatic choice passed over the damaged backup"
    good_backup.refresh_from_db()
    assert good_backup.verification == Backup.Verification.FAILED
    assert good_backup.verification_error.startswith(f"sha256 of {good_backup.name} is ")
    assert good_backup.verified_at > request.created, "when it was found damaged"
    event = AuditEvent.objects.get(action="backup.damaged", object_id=str(good_backup.pk))
    assert event.outcome == "failure" and event.details["found_by"] == "a recovery's checksum check"
    assert choose.newest(sample_database) == older, "the next choice, from the catalogue alone"
    assert "is not verified by restore (verification failed: sha256 of" in choose.refusal(good_backup)
