"""The audit trail: append-only in the database itself, and a hash chain that finds tampering."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from portal import audit
from portal.models import AuditEvent


@pytest.fixture
def three_events(db) -> list[AuditEvent]:
    return [audit.record(f"test.step{i}", actor="tester", target="paws360", details={"i": i}) for i in range(3)]


def test_it_chains_each_event_to_the_one_before(three_events):
    first, second, third = three_events
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert audit.verify_chain().intact


def test_the_database_rejects_update(three_events):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=three_events[0].pk).update(outcome="failure")
    assert AuditEvent.objects.get(pk=three_events[0].pk).outcome == "success"


def test_the_database_rejects_delete(three_events):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM portal_auditevent WHERE id = %s", [three_events[1].pk])
    assert AuditEvent.objects.count() == 3


def _tamper(sql: str, params: list) -> None:
    """What an intruder with the table owner's rights could do: switch the trigger off around a change."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE portal_auditevent DISABLE TRIGGER portal_auditevent_no_update_delete")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE portal_auditevent ENABLE TRIGGER portal_auditevent_no_update_delete")


def test_the_chain_check_names_a_changed_row(three_events):
    _tamper("UPDATE portal_auditevent SET outcome = 'failure' WHERE id = %s", [three_events[1].pk])
    report = audit.verify_chain()
    assert report.first_broken_id == three_events[1].pk
    assert "contents" in report.reason
    with pytest.raises(CommandError, match=f"broken at event {three_events[1].pk}"):
        call_command("verify_audit_chain")


def test_the_chain_check_names_the_row_after_a_removed_one(three_events):
    _tamper("DELETE FROM portal_auditevent WHERE id = %s", [three_events[1].pk])
    assert audit.verify_chain().first_broken_id == three_events[2].pk


def test_the_command_reports_an_intact_chain(three_events, capsys):
    call_command("verify_audit_chain")
    assert "intact: 3 events" in capsys.readouterr().out


def test_it_records_the_user_who_acted(dba):
    event = audit.record("target.check", actor=dba, target="embedded")
    assert event.actor == "dana_dba"
