"""Backup policies in the admin: validation, the runbook's defaults, and their schedules kept in step."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_q.models import Schedule

from backups.models import BackupPolicy
from backups.schedules import TASK, schedule_name
from portal.models import AuditEvent

ADD = "admin:backups_backuppolicy_add"


def form(sample_database, **changes) -> dict:
    data = {"name": "paws360 nightly", "kind": "logical", "cluster": sample_database.cluster_id,
            "database": sample_database.pk, "enabled": "on", "schedule": "", "retention_days": "",
            "min_verified": 3, "dump_format": "directory", "jobs": 2, "compression": 1, "verify_every": 1,
            "checkpoint": "fast", "backups-TOTAL_FORMS": 0, "backups-INITIAL_FORMS": 0}
    return {**data, **changes}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("schedule", "61 2 * * *", "is not a cron expression"),
    ("schedule", "every night", "is not a cron expression"),
    ("schedule", "0 2 * *", "is not a cron expression"),
    ("retention_days", "0", "greater than or equal to 1"),
    ("retention_days", "-5", "greater than or equal to"),
    ("retention_days", "5000", "less than or equal to 3650"),
    ("retention_days", "thirty", "Enter a whole number"),
])
def test_an_invalid_cron_or_retention_is_a_form_error_and_nothing_is_saved(client, dba, sample_database, field,
                                                                           value, message):
    client.force_login(dba)
    response = client.post(reverse(ADD), form(sample_database, **{field: value}))
    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert not BackupPolicy.objects.exists() and not Schedule.objects.filter(func=TASK).exists()
    assert not AuditEvent.objects.filter(action="backuppolicy.create").exists()


def test_empty_schedule_and_retention_take_the_runbooks_values_for_the_kind(client, dba, sample_database):
    client.force_login(dba)
    assert client.post(reverse(ADD), form(sample_database)).status_code == 302
    config_form = form(sample_database, name="config", kind="config", database="")
    assert client.post(reverse(ADD), config_form).status_code == 302
    full, config = BackupPolicy.objects.get(kind="logical"), BackupPolicy.objects.get(kind="config")
    assert (full.schedule, full.retention_days) == ("0 2 * * *", 30)
    assert (config.schedule, config.retention_days) == ("30 2 * * *", 90)
    assert AuditEvent.objects.filter(action="backuppolicy.create", actor=dba.username).count() == 2


def test_an_encrypted_policy_needs_keys_and_the_custom_format(client, dba, sample_database, settings):
    client.force_login(dba)
    settings.BACKUP_AGE_RECIPIENTS_FILE = ""
    response = client.post(reverse(ADD), form(sample_database, encrypt="on", dump_format="custom"))
    assert "BACKUP_AGE_RECIPIENTS_FILE" in str(response.context["adminform"].form.errors["encrypt"])
    settings.BACKUP_AGE_RECIPIENTS_FILE = "/etc/paws360/backup.pub"
    response = client.post(reverse(ADD), form(sample_database, encrypt="on", dump_format="directory"))
    assert "choose the custom format" in str(response.context["adminform"].form.errors["dump_format"])
    assert not BackupPolicy.objects.exists()


def test_a_logical_policy_needs_a_database_of_its_cluster(client, dba, sample_database):
    client.force_login(dba)
    response = client.post(reverse(ADD), form(sample_database, database=""))
    assert "needs the database" in str(response.context["adminform"].form.errors["database"])


def test_the_schedule_follows_the_policy_created_changed_disabled_and_deleted(client, dba, sample_database):
    client.force_login(dba)
    client.post(reverse(ADD), form(sample_database, schedule="15 1 * * *"))
    policy = BackupPolicy.objects.get()
    schedule = Schedule.objects.get(name=schedule_name(policy.pk))
    assert (schedule.func, schedule.args, schedule.cron) == (TASK, str(policy.pk), "15 1 * * *")
    assert (schedule.next_run.hour, schedule.next_run.minute) == (1, 15)

    change = reverse("admin:backups_backuppolicy_change", args=[policy.pk])
    assert client.post(change, form(sample_database, name="renamed", schedule="45 4 * * 1-5")).status_code == 302
    schedule = Schedule.objects.get(name=schedule_name(policy.pk))
    assert schedule.cron == "45 4 * * 1-5" and Schedule.objects.filter(func=TASK).count() == 1

    disabled = form(sample_database, schedule="45 4 * * 1-5")
    del disabled["enabled"]
    client.post(change, disabled)
    assert not Schedule.objects.filter(func=TASK).exists()

    client.post(change, form(sample_database, schedule="45 4 * * 1-5"))
    assert Schedule.objects.filter(func=TASK).count() == 1
    client.post(reverse("admin:backups_backuppolicy_delete", args=[policy.pk]), {"post": "yes"})
    assert not BackupPolicy.objects.exists() and not Schedule.objects.filter(func=TASK).exists()


def test_an_operator_sees_policies_but_cannot_change_them(client, operator, sample_database):
    policy = BackupPolicy.objects.create(name="full", kind="logical", cluster=sample_database.cluster,
                                         database=sample_database)
    client.force_login(operator)
    change = reverse("admin:backups_backuppolicy_change", args=[policy.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, form(sample_database, schedule="0 5 * * *")).status_code == 403
    assert client.get(reverse(ADD)).status_code == 403
    policy.refresh_from_db()
    assert policy.schedule == "0 2 * * *"
