"""The recovery pages, through the admin as people use them: requesting (form errors for a bad backup, a table the
backup lacks, a busy destination, a time without a zone), approving (never by the requester, an operator or an
auditor; POST only; an approval that expired is refused when the recovery runs), the live step list's JSON."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from backups.models import Backup
from portal.models import AuditEvent
from recovery.models import Approval, RecoveryRequest
from tests.backups.conftest import catalog
from tests.backups.test_faults import flip_bytes, largest_file
from tests.recovery.conftest import run, submit

ADD = "/admin/recovery/recoveryrequest/add/"


def page(pk: int, what: str = "change") -> str:
    return f"/admin/recovery/recoveryrequest/{pk}/{what}/"


def form(database, **fields) -> dict[str, object]:
    return {"kind": "complete", "database": database.pk, "cluster": "", "backup": "", "target_time": "",
            "tables": "", "merge_policy": "new_table", "destination": "beside", "destination_name": "",
            "reason": "INC-3101 registrar reports wrong grades"} | fields


def post(client, user, url: str, data: dict | None = None):
    client.force_login(user)
    return client.post(url, data or {}, follow=True)


def test_an_operator_requests_a_replace_that_waits_for_approval(client, sample_database, good_backup, operator):
    client.force_login(operator)
    shown = client.get(ADD)
    assert shown.status_code == 200
    assert re.search(f'<option value="{good_backup.pk}" selected data-database="{sample_database.pk}"',
                     shown.content.decode())
    assert shown.context["adminform"].form.initial["backup"] == good_backup.pk

    done = client.post(ADD, form(sample_database, destination="replace"), follow=True)

    recovery = RecoveryRequest.objects.get()
    assert done.redirect_chain[-1][0] == page(recovery.pk)
    assert b"it waits for a second DBA" in done.content
    assert (recovery.status, recovery.requester, recovery.backup) == ("requested", operator, good_backup)
    assert recovery.destination_name == sample_database.name
    assert AuditEvent.objects.filter(action="recovery.request", actor=operator.username, outcome="success").exists()


def test_the_form_offers_only_good_backups(client, sample_database, logical_policy, good_backup, operator):
    others = [catalog(logical_policy, verification=Backup.Verification.PENDING),
              catalog(logical_policy, status=Backup.Status.FAILED),
              catalog(logical_policy, source=good_backup)]
    Backup.objects.filter(pk=others[2].pk).update(expired_at=timezone.now())
    client.force_login(operator)
    offered = [b.pk for b in client.get(ADD).context["adminform"].form.fields["backup"].queryset]
    assert offered == [good_backup.pk]


def test_an_unverified_backup_chosen_is_a_form_error_with_the_reason(client, sample_database, logical_policy,
                                                                     good_backup, operator):
    unverified = catalog(logical_policy, source=good_backup, verification=Backup.Verification.PENDING)
    answer = post(client, operator, ADD, form(sample_database, backup=unverified.pk))
    assert answer.status_code == 200
    assert f"backup #{unverified.pk} ({unverified}) is not verified by restore (not verified yet)" in \
        answer.content.decode()
    assert not RecoveryRequest.objects.exists()


def test_a_truncated_backup_chosen_is_a_form_error_with_the_reason(client, sample_database, good_backup, operator):
    """The form checks the files are there with their size (cheap); reading them whole is the worker's job."""
    victim = largest_file(good_backup)
    with open(victim, "r+b") as data:
        data.truncate(victim.stat().st_size - 1)
    answer = post(client, operator, ADD, form(sample_database, backup=good_backup.pk))
    errors = answer.context["adminform"].form.errors["backup"]
    assert errors[0].startswith(f"backup #{good_backup.pk} ({good_backup}) is corrupt: {good_backup.name} holds ")
    assert not RecoveryRequest.objects.exists()


def test_a_flipped_byte_passes_the_form_and_is_found_by_the_recoverys_first_step(client, sample_database,
                                                                              good_backup, operator):
    victim = largest_file(good_backup)
    flip_bytes(victim, victim.stat().st_size // 2)
    post(client, operator, ADD, form(sample_database, backup=good_backup.pk, destination="beside"))
    request = run(RecoveryRequest.objects.get())
    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error.startswith(f"backup #{good_backup.pk} ({good_backup}) is corrupt: sha256 of")
    first = request.steps.order_by("position").first()
    assert (first.name, first.status) == ("Check the backup", "failed")


def test_a_table_not_in_the_backup_is_a_form_error_that_lists_its_tables(client, sample_database, good_backup,
                                                                         operator):
    answer = post(client, operator, ADD, form(sample_database, kind="table", tables="paws360.grades"))
    assert answer.context["adminform"].form.errors["tables"] == [
        f"paws360.grades is not in backup #{good_backup.pk}; it has: audit.audit_log, paws360.courses, "
        "paws360.enrollments, paws360.notifications, paws360.sessions, paws360.students, paws360.users"]


def test_a_table_merge_into_production_needs_approval_a_new_table_does_not(client, sample_database, good_backup,
                                                                           operator):
    post(client, operator, ADD, form(sample_database, kind="table", tables="paws360.students",
                                     merge_policy="insert_missing"))
    post(client, operator, ADD, form(sample_database, kind="table", tables="paws360.courses"))
    merge, new_table = RecoveryRequest.objects.order_by("pk")
    assert (merge.status, merge.destination, merge.tables) == ("requested", "replace", ["paws360.students"])
    assert (new_table.status, new_table.destination) == ("queued", "beside")


def test_two_recoveries_into_the_same_destination_are_refused(client, sample_database, good_backup, operator):
    post(client, operator, ADD, form(sample_database, destination="replace"))
    answer = post(client, operator, ADD, form(sample_database, destination="replace"))
    first = RecoveryRequest.objects.get()
    assert answer.context["adminform"].form.non_field_errors() == [
        f"recovery #{first.pk} is already restoring into '{sample_database.name}'"]


def test_a_target_time_is_read_in_any_zone_and_kept_in_utc(client, marked_target, archiving, operator):
    local = marked_target.astimezone(ZoneInfo("America/Chicago"))
    answer = post(client, operator, ADD, {"kind": "pitr", "cluster": archiving.cluster.pk, "destination": "beside",
                                          "target_time": f"{local:%Y-%m-%d %H:%M:%S.%f} America/Chicago",
                                          "merge_policy": "new_table", "reason": "INC-3102"})

    recovery = RecoveryRequest.objects.get()
    assert recovery.target_time == marked_target and recovery.target_time.utcoffset() == timedelta(0)
    assert f"{marked_target.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC".encode() in answer.content


def test_a_target_time_outside_the_window_is_refused_with_the_window(client, marked_target, archiving, operator):
    answer = post(client, operator, ADD, {"kind": "pitr", "cluster": archiving.cluster.pk, "destination": "beside",
                                          "target_time": "2026-01-05 08:00 -06:00", "merge_policy": "new_table",
                                          "reason": "INC-3103"})

    error = answer.context["adminform"].form.errors["target_time"][0]
    assert error.startswith("2026-01-05 14:00:00+00:00 is outside the recoverable window"), error
    assert not RecoveryRequest.objects.exists()


@pytest.mark.parametrize(("text", "error"), [
    ("2026-11-25 14:30", "Give the time zone too"),
    ("2026-11-01 01:30 America/Chicago", "happens twice or never in America/Chicago"),
    ("2026-11-25 14:30 Mars/Olympus", "Unknown time zone 'Mars/Olympus'"),
    ("yesterday at noon", "Write the time as YYYY-MM-DD HH:MM[:SS]"),
])
def test_a_target_time_that_is_not_clear_is_refused(client, embedded_cluster, operator, text, error):
    answer = post(client, operator, ADD, {"kind": "pitr", "cluster": embedded_cluster.pk, "target_time": text,
                                          "destination": "beside", "merge_policy": "new_table", "reason": "x"})
    assert error in answer.context["adminform"].form.errors["target_time"][0]


def test_the_requester_cannot_approve_through_the_page(client, sample_database, good_backup, dba, dba2):
    recovery = submit(sample_database, dba, destination=RecoveryRequest.Destination.REPLACE)
    client.force_login(dba)
    assert b"approve-button" not in client.get(page(recovery.pk)).content

    answer = post(client, dba, page(recovery.pk, "approve"))

    assert "Not approved: the requester cannot approve their own request; a second DBA must." in \
        answer.content.decode()
    recovery.refresh_from_db()
    assert recovery.status == "requested" and not recovery.approvals.exists()
    assert AuditEvent.objects.filter(action="recovery.approve", actor=dba.username, outcome="denied").exists()
    client.force_login(dba2)
    assert b"approve-button" in client.get(page(recovery.pk)).content


@pytest.mark.parametrize("who", ["operator", "auditor"])
def test_only_a_dba_may_approve(client, request, sample_database, good_backup, dba, who):
    recovery = submit(sample_database, dba, destination=RecoveryRequest.Destination.REPLACE)
    answer = post(client, request.getfixturevalue(who), page(recovery.pk, "approve"))
    assert "Not approved: only a DBA may approve a recovery." in answer.content.decode()
    recovery.refresh_from_db()
    assert recovery.status == "requested"


def test_a_second_dba_approves_through_the_page(client, sample_database, good_backup, operator, dba):
    recovery = submit(sample_database, operator, destination=RecoveryRequest.Destination.REPLACE)
    client.force_login(dba)
    assert client.get(page(recovery.pk, "approve")).status_code == 405, "approving takes a POST"

    answer = post(client, dba, page(recovery.pk, "approve"), {"comment": "checked with the registrar"})

    recovery.refresh_from_db()
    assert recovery.status == "queued"
    approval = recovery.approvals.get()
    assert (approval.approver, approval.comment) == (dba, "checked with the registrar")
    assert f"Approved by <strong>{dba.username}</strong>" in answer.content.decode()


def test_a_rejection_needs_a_reason(client, sample_database, good_backup, operator, dba):
    recovery = submit(sample_database, operator, destination=RecoveryRequest.Destination.REPLACE)
    assert "say why" in post(client, dba, page(recovery.pk, "reject")).content.decode()
    post(client, dba, page(recovery.pk, "reject"), {"comment": "restore only the grades table instead"})
    recovery.refresh_from_db()
    assert (recovery.status, recovery.error) == ("rejected", "rejected: restore only the grades table instead")


def test_an_expired_approval_is_refused_when_the_recovery_runs(client, sample_database, good_backup, operator, dba):
    recovery = submit(sample_database, operator, destination=RecoveryRequest.Destination.REPLACE)
    post(client, dba, page(recovery.pk, "approve"))
    Approval.objects.filter(request=recovery).update(expires=timezone.now() - timedelta(seconds=1))

    recovery = run(recovery)

    assert recovery.status == "failed"
    assert recovery.error == "no usable approval: it expired or was already used; a DBA must approve again"
    shown = client.get(page(recovery.pk)).content.decode()
    assert "expired at" in shown and "unused" in shown


def test_an_auditor_sees_everything_and_changes_nothing(client, sample_database, good_backup, operator, auditor):
    recovery = submit(sample_database, operator, destination=RecoveryRequest.Destination.REPLACE)
    client.force_login(auditor)
    listing = client.get("/admin/recovery/recoveryrequest/")
    assert listing.status_code == 200 and str(recovery).encode() in listing.content
    assert ADD.encode() not in listing.content
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, form(sample_database)).status_code == 403
    shown = client.get(page(recovery.pk))
    assert shown.status_code == 200 and b"approve-button" not in shown.content and b"INC-2207" in shown.content
    assert RecoveryRequest.objects.count() == 1


def test_the_progress_json_carries_the_step_list(client, sample_database, good_backup, operator, auditor):
    recovery = run(submit(sample_database, operator, kind=RecoveryRequest.Kind.DRILL))
    client.force_login(auditor)
    data = client.get(page(recovery.pk, "progress")).json()
    assert (data["status"], data["finished"], data["percent"]) == ("succeeded", True, 100)
    assert [s["status"] for s in data["steps"]] == ["succeeded"] * 5
    assert data["steps"][1]["name"] == "Restore it into a scratch database"
    assert "pg_restore started" in data["steps"][1]["log"]
    assert data["label"].startswith("Succeeded · RTO ")


@pytest.mark.parametrize(("name", "error"), [
    (None, "exists already"),  # production's own name
    ("Paws360 Copy", "Use lower-case letters, digits and _"),
])
def test_a_destination_beside_production_must_be_a_new_plain_name(client, sample_database, good_backup, operator,
                                                                  name, error):
    answer = post(client, operator, ADD, form(sample_database, destination_name=name or sample_database.name))
    assert error in answer.context["adminform"].form.errors["destination_name"][0]
    assert not RecoveryRequest.objects.exists()


def test_a_point_in_time_drill_shows_what_it_counted_on_the_recovered_cluster(client, embedded_cluster, auditor):
    drill = RecoveryRequest.objects.create(
        kind=RecoveryRequest.Kind.DRILL, drill_kind="pitr", cluster=embedded_cluster, reason="weekly",
        status=RecoveryRequest.Status.SUCCEEDED, rto_seconds=20.9,
        verification={"timeline": 2, "amcheck": {"ok": True, "seconds": 0.4},
                      "database_counts": {"paws360": {"paws360.users": 15000, "paws360.students": 13500}}})
    client.force_login(auditor)

    text = client.get(page(drill.pk)).content.decode()

    assert "a scratch cluster, removed afterwards" in text
    assert "The recovered cluster, on timeline 2: exact row counts of\n  every table, read on it." in text
    assert re.search(r"<td>paws360</td><td class=\"num\">2</td><td class=\"num\">28,500</td>", text)
    assert "in the tables and B-tree indexes of every database" in text
    assert ">match<" not in text, "nothing was compared with a manifest"
