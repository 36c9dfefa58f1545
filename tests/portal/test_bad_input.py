"""The inputs that gave server errors, each now a form error with its reason and nothing saved: impossible target
times in the recovery form, a cron that never fires or fires more often than its kind of schedule may, over-long
values; and the pages' free texts (an approval's comment, a rejection's, a promotion's reason)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core import checks
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_q.models import Schedule

from backups.models import BackupPolicy, WalArchive
from portal.models import AuditEvent, ManagedCluster, ManagedDatabase
from recovery.models import Approval, DrillSchedule, RecoveryRequest

LONG = "n" * 10_000
RECOVERY_ADD = "/admin/recovery/recoveryrequest/add/"
POLICY_ADD = "admin:backups_backuppolicy_add"


@pytest.fixture
def cluster(db) -> ManagedCluster:
    return ManagedCluster.objects.create(name="registrar", port=5432)


@pytest.fixture
def database(cluster) -> ManagedDatabase:
    return ManagedDatabase.objects.create(cluster=cluster, name="paws360")


def form_errors(response, field: str) -> list[str]:
    assert response.status_code == 200
    return [str(message) for message in response.context["adminform"].form.errors.get(field, [])]


@pytest.mark.parametrize(("text", "error"), [
    ("2026-02-30 10:00 UTC", "2026-02-30 10:00 is not a date and time that exists (day is out of range for month)"),
    ("2026-12-02 25:00 UTC", "2026-12-02 25:00 is not a date and time that exists (hour must be in 0..23)"),
    ("2026-12-02 10:60 -06:00", "minute must be in 0..59"),
    ("0000-01-01 10:00 UTC", "year 0 is out of range"),
    ("9999-12-31 23:00 -06:00", "outside the range of dates"),
    ("2026-12-02 10:00 +25:00", "A UTC offset is less than 24 hours"),
    ("garbage", "Write the time as YYYY-MM-DD HH:MM[:SS]"),
    ("2026-12-02 10:00 " + "Z" * 47, "Unknown time zone '" + "Z" * 40 + "…'."),
    (LONG, "At most 64 characters (this has 10,000)."),
])
def test_an_impossible_target_time_is_a_form_error(client, operator, cluster, text, error):
    client.force_login(operator)
    response = client.post(RECOVERY_ADD, {"kind": "pitr", "cluster": cluster.pk, "target_time": text,
                                          "destination": "beside", "merge_policy": "new_table", "reason": "INC-1"})
    errors = form_errors(response, "target_time")
    assert any(error in message for message in errors), errors
    assert not any(LONG[:100] in message or "Z" * 41 in message for message in errors)
    assert not RecoveryRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="recovery.request").exists()


def test_over_long_texts_of_the_recovery_form_are_refused_without_repeating_them(client, operator, database):
    client.force_login(operator)
    response = client.post(RECOVERY_ADD, {"kind": "complete", "database": database.pk, "destination": "beside",
                                          "merge_policy": "new_table", "destination_name": LONG, "tables": LONG,
                                          "backup": LONG, "reason": LONG})
    for field, limit in [("destination_name", "63"), ("tables", "1,000"), ("backup", "255"), ("reason", "4,000")]:
        assert form_errors(response, field) == [f"At most {limit} characters (this has 10,000)."]
    assert not RecoveryRequest.objects.exists()


def policy_form(database: ManagedDatabase, **changes: object) -> dict[str, object]:
    data = {"name": "paws360 nightly", "kind": "logical", "cluster": database.cluster_id, "database": database.pk,
            "enabled": "on", "schedule": "", "retention_days": "", "min_verified": 3, "dump_format": "directory",
            "jobs": 2, "compression": 1, "verify_every": 1, "checkpoint": "fast", "backups-TOTAL_FORMS": 0,
            "backups-INITIAL_FORMS": 0}
    return {**data, **changes}


@pytest.mark.parametrize(("field", "value", "error"), [
    ("schedule", "0 2 31 2 *", "This schedule never fires: no date matches it (such as 31 February)."),
    ("schedule", "0 0 31 4,6,9,11 *", "never fires"),
    ("schedule", "*/10 * * * *", "This schedule fires 10 min after a previous run; it may fire at most once every "
                                 "1 h (BACKUP_SCHEDULE_MIN_MINUTES)."),
    ("schedule", LONG, "At most 100 characters (this has 10,000)."),
    ("schedule", "x" * 99, "This is not a cron expression of five fields"),
    ("name", LONG, "At most 100 characters (this has 10,000)."),
    ("retention_days", "9" * 30, "Ensure this value is less than or equal to 3650."),
])
def test_a_bad_backup_schedule_or_value_is_a_form_error_and_nothing_is_saved(client, dba, database, field, value,
                                                                             error):
    client.force_login(dba)
    response = client.post(reverse(POLICY_ADD), policy_form(database, **{field: value}))
    errors = form_errors(response, field)
    assert errors == [error] or any(error in message for message in errors), errors
    assert not any("x" * 50 in message or "n" * 50 in message for message in errors)
    assert not BackupPolicy.objects.exists()
    assert not Schedule.objects.filter(func="backups.tasks.scheduled_backup").exists()


def test_the_backup_minimum_is_a_setting(client, dba, database, settings):
    client.force_login(dba)
    assert client.post(reverse(POLICY_ADD), policy_form(database, schedule="0 * * * *")).status_code == 302
    settings.BACKUP_SCHEDULE_MIN_MINUTES = 6 * 60
    response = client.post(reverse(POLICY_ADD), policy_form(database, name="four-hourly", schedule="0 */4 * * *"))
    assert "fires 4 h after a previous run; it may fire at most once every 6 h (BACKUP_SCHEDULE_MIN_MINUTES)" in \
        form_errors(response, "schedule")[0]
    response = client.post(reverse(POLICY_ADD), policy_form(database, name="late and early", schedule="0 0,23 * * *"))
    assert "fires 1 h after" in form_errors(response, "schedule")[0]  # 23:00, then 00:00 the next day
    assert list(BackupPolicy.objects.values_list("schedule", flat=True)) == ["0 * * * *"]


@pytest.mark.parametrize(("cron", "error"), [
    ("0 4 31 2 *", "never fires"),
    ("0 * * * *", "fires 1 h after a previous run; it may fire at most once every 24 h (DRILL_SCHEDULE_MIN_MINUTES)"),
    ("0 4,16 * * *", "fires 12 h after"),
])
def test_a_drill_schedule_that_never_fires_or_fires_too_often_is_refused(cluster, cron, error):
    with pytest.raises(CommandError, match=error.replace("(", r"\(").replace(")", r"\)")):
        call_command("schedule_drill", cluster.name, "--cron", cron, stdout=StringIO())
    assert not DrillSchedule.objects.exists() and not Schedule.objects.filter(name__startswith="recovery:").exists()
    drill = DrillSchedule(kind=DrillSchedule.Kind.PITR, cluster=cluster, cron=cron)
    with pytest.raises(ValidationError) as refused:
        drill.full_clean()
    assert error in " ".join(refused.value.message_dict["cron"])


def test_a_default_drill_schedule_that_fires_too_often_fails_the_system_check(settings):
    settings.DRILL_DEFAULT_SCHEDULE = "*/30 * * * *"
    found = [message for message in checks.run_checks() if message.id == "portal.E001"]
    assert len(found) == 1 and "DRILL_DEFAULT_SCHEDULE: This schedule fires 30 min after" in found[0].msg
    settings.DRILL_DEFAULT_SCHEDULE = "0 4 * * 0"
    assert not [message for message in checks.run_checks() if message.id == "portal.E001"]


def test_a_port_and_a_wal_retention_out_of_range_are_form_errors(client, dba, cluster):
    client.force_login(dba)
    page = reverse("admin:portal_managedcluster_change", args=[cluster.pk])
    data = {"name": "registrar", "host": "127.0.0.1", "port": "99999", "role": "postgres", "control": "none",
            "os_user": "postgres", "databases-TOTAL_FORMS": 0, "databases-INITIAL_FORMS": 0}
    assert form_errors(client.post(page, data), "port") == ["A TCP port: 1 to 65535."]
    archive = WalArchive.objects.create(cluster=cluster, path="/srv/wal/registrar")
    page = reverse("admin:backups_walarchive_change", args=[archive.pk])
    assert form_errors(client.post(page, {"retention_days": "999999"}), "retention_days") == [
        "At most 3650 days (ten years)."]
    cluster.refresh_from_db()
    archive.refresh_from_db()
    assert (cluster.port, archive.retention_days) == (5432, 7)


@pytest.fixture
def awaiting(database, operator) -> RecoveryRequest:
    return RecoveryRequest.objects.create(kind="complete", cluster=database.cluster, database=database,
                                          destination="replace", destination_name=database.name, requester=operator,
                                          status=RecoveryRequest.Status.REQUESTED, reason="INC-7")


@pytest.mark.parametrize(("view", "field"), [("approve", "comment"), ("reject", "comment")])
@pytest.mark.parametrize("text", [LONG, "late\x00night"])
def test_an_approval_or_rejection_with_a_bad_comment_is_refused(client, dba, awaiting, view, field, text):
    client.force_login(dba)
    response = client.post(f"/admin/recovery/recoveryrequest/{awaiting.pk}/{view}/", {field: text}, follow=True)
    page = response.content.decode()
    assert response.status_code == 200
    assert "At most 4,000 characters (this has 10,000)." in page or "Null characters are not allowed." in page
    assert LONG[:100] not in page
    awaiting.refresh_from_db()
    assert awaiting.status == RecoveryRequest.Status.REQUESTED and not Approval.objects.exists()


def test_a_promotion_with_an_over_long_reason_is_refused(client, operator, cluster):
    pitr = RecoveryRequest.objects.create(kind="pitr", cluster=cluster, status=RecoveryRequest.Status.SUCCEEDED,
                                          reason="INC-8")
    client.force_login(operator)
    response = client.post(f"/admin/recovery/recoveryrequest/{pitr.pk}/promote/", {"reason": LONG}, follow=True)
    assert "Not requested: the reason: At most 4,000 characters (this has 10,000)." in response.content.decode()
    assert RecoveryRequest.objects.count() == 1


def test_an_odd_digit_in_the_expiry_is_ignored(client, dba, database):
    policy = BackupPolicy.objects.create(name="nightly", kind="logical", cluster=database.cluster, database=database)
    client.force_login(dba)
    response = client.post(reverse("backups:retention_apply", args=[policy.pk]), {"backup": ["\u00b2", "\u0663"]},
                           follow=True)
    assert response.status_code == 200 and "Nothing to expire." in response.content.decode()
