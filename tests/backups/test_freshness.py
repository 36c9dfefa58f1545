"""The runbook's backup monitoring through /health: a policy whose newest run failed, whose newest backup failed
verification, or that missed two scheduled runs fails the check; disabled policies are not watched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from backups import freshness
from backups.models import Backup, BackupPolicy
from tests.backups.conftest import catalog

pytestmark = pytest.mark.django_db
TOKEN = "monitoring-" + "m" * 40


def made_days_ago(policy: BackupPolicy, days: float) -> None:
    BackupPolicy.objects.filter(pk=policy.pk).update(created=timezone.now() - timedelta(days=days))
    policy.refresh_from_db()


def backups_check(client, policy: BackupPolicy) -> tuple[str, dict]:
    """As monitoring reads it: /health's details, with the bearer token."""
    with override_settings(HEALTH_TOKEN=TOKEN):
        body = client.get(reverse("health"), headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return body["status"], body["backups"].get(policy.name)


def test_it_reports_the_newest_good_backup_with_what_the_policy_keeps(client, policy):
    made_days_ago(policy, 10)
    first = catalog(policy, days_ago=1.5)
    newest = catalog(policy, days_ago=0.1, source=first)

    _, check = backups_check(client, policy)

    assert check["ok"] is True, check
    assert check["detail"].startswith(f"newest #{newest.pk}, 2 h 24 min old, verified; 2 kept (2 verified), ")


def test_two_missed_scheduled_runs_fail_the_check(client, policy):
    made_days_ago(policy, 10)
    old = catalog(policy, days_ago=2.5)

    status, check = backups_check(client, policy)

    assert status == "fail"
    assert check == {"ok": False, "detail": f"no good backup since {old.created:%Y-%m-%d %H:%M} UTC: two scheduled "
                                            "runs (0 2 * * *) passed without one"}


def test_a_new_policy_is_not_late_until_two_runs_passed(policy):
    assert freshness.state(policy) == (True, "no backup has run yet")
    made_days_ago(policy, 2.1)
    assert freshness.state(policy) == (False, "no good backup yet: two scheduled runs (0 2 * * *) passed without one")


def test_a_failed_newest_run_fails_the_check_with_its_error(policy):
    good = catalog(policy, days_ago=0.5)
    failed = catalog(policy, days_ago=0.1, status=Backup.Status.FAILED)

    ok, detail = freshness.state(policy)

    assert not ok and detail == f"the newest run, #{failed.pk}, failed: pg_dump exited with code 1"
    Backup.objects.filter(pk=failed.pk).delete()
    assert freshness.state(policy)[0] is True, "the good one alone passes"
    assert good.is_good


def test_a_newest_backup_that_failed_verification_fails_the_check(policy):
    catalog(policy, days_ago=0.1, verification=Backup.Verification.FAILED)
    ok, detail = freshness.state(policy)
    assert not ok and detail.endswith("failed verification")


def test_a_disabled_policy_is_not_watched(client, policy):
    made_days_ago(policy, 10)
    BackupPolicy.objects.filter(pk=policy.pk).update(enabled=False)
    assert backups_check(client, policy)[1] is None
