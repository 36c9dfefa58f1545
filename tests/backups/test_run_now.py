"""Running a policy now: the admin action and the button, who may, one run at a time, queued on commit."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from backups import runs
from backups.models import Backup, BackupPolicy
from portal.models import AuditEvent


@pytest.fixture
def policy(sample_database) -> BackupPolicy:
    return BackupPolicy.objects.create(name="paws360 full", kind="logical", cluster=sample_database.cluster,
                                       database=sample_database)


def run_url(policy: BackupPolicy) -> str:
    return reverse("admin:backups_backuppolicy_run", args=[policy.pk])


def queued_tasks() -> list:
    return [task.func() for task in OrmQ.objects.all()]


def test_an_operator_runs_a_policy_from_its_page(client, operator, policy, django_capture_on_commit_callbacks):
    client.force_login(operator)
    page = client.get(reverse("admin:backups_backuppolicy_change", args=[policy.pk]))
    assert b"run-now-button" in page.content and run_url(policy).encode() in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(run_url(policy))
    backup = Backup.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:backups_backup_change", args=[backup.pk])
    assert (backup.status, backup.triggered_by, backup.kind) == ("queued", operator.username, "logical")
    assert queued_tasks() == ["backups.tasks.run_backup"]
    event = AuditEvent.objects.get(action="backup.request")
    assert (event.actor, event.outcome, event.object_id) == (operator.username, "success", str(backup.pk))


def test_an_auditor_can_neither_see_the_button_nor_run(client, auditor, policy):
    client.force_login(auditor)
    page = client.get(reverse("admin:backups_backuppolicy_change", args=[policy.pk]))
    assert page.status_code == 200 and b"run-now-button" not in page.content
    assert client.post(run_url(policy)).status_code == 403
    assert not Backup.objects.exists()
    assert AuditEvent.objects.get(action="backup.request").outcome == "denied"
    changelist = client.get(reverse("admin:backups_backuppolicy_changelist"))
    assert b"run_now" not in changelist.content


def test_running_needs_a_post(client, operator, policy):
    client.force_login(operator)
    assert client.get(run_url(policy)).status_code == 405
    assert not Backup.objects.exists()


def test_the_button_needs_the_csrf_token(operator, policy):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(run_url(policy)).status_code == 403
    assert not Backup.objects.exists()


def test_one_run_per_policy_at_a_time(client, operator, policy):
    client.force_login(operator)
    client.post(run_url(policy))
    first = Backup.objects.get()
    response = client.post(run_url(policy), follow=True)
    assert Backup.objects.count() == 1
    text = response.content.decode()
    assert "already queued or running" in text and f"backup #{first.pk}" in text
    with pytest.raises(runs.AlreadyRunning):
        runs.create(policy, actor="cron", via="test")
    first.status = Backup.Status.FAILED
    first.save()
    assert runs.create(policy, actor="cron", via="test").status == "queued"


def test_the_admin_action_runs_the_selected_policies(client, operator, policy, sample_database,
                                                     django_capture_on_commit_callbacks):
    other = BackupPolicy.objects.create(name="config", kind="config", cluster=sample_database.cluster)
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:backups_backuppolicy_changelist"),
                               {"action": "run_now", "_selected_action": [policy.pk, other.pk]}, follow=True)
    assert response.status_code == 200
    assert sorted(Backup.objects.values_list("kind", flat=True)) == ["config", "logical"]
    assert queued_tasks() == ["backups.tasks.run_backup"] * 2


def test_the_backup_page_shows_a_progress_bar_fed_by_json(client, auditor, policy):
    backup = runs.create(policy, actor="olga", via="test")
    Backup.objects.filter(pk=backup.pk).update(status="running", progress_done=250_000, progress_total=1_000_000,
                                               progress_note="dumping contents of table \"paws360.enrollments\"")
    client.force_login(auditor)
    page = client.get(reverse("admin:backups_backup_change", args=[backup.pk]))
    progress = reverse("admin:backups_backup_progress", args=[backup.pk])
    assert page.status_code == 200 and progress.encode() in page.content and b"progress.js" in page.content
    data = client.get(progress).json()
    assert (data["percent"], data["finished"], data["status"]) == (25, False, "running")
    assert "244.1 KB of ~976.6 KB (25%)" in data["label"].replace("\xa0", " ")
    assert client.get(reverse("admin:backups_backup_changelist")).content.count(progress.encode()) == 1


def test_the_catalogue_is_read_only_even_for_a_dba(client, dba, policy):
    backup = runs.create(policy, actor="olga", via="test")
    client.force_login(dba)
    assert client.get(reverse("admin:backups_backup_add")).status_code == 403
    assert client.post(reverse("admin:backups_backup_delete", args=[backup.pk]), {"post": "yes"}).status_code == 403
    page = client.get(reverse("admin:backups_backup_change", args=[backup.pk]))
    assert b'name="name"' not in page.content
