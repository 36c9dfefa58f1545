"""The audit trail: a hash chain, a table the portal's own role may only append to, and anchors outside the
database that find an emptied table, a deleted tail or a rewritten and re-hashed row."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from psycopg import sql

from portal import anchors, audit, audit_privileges, embedded
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
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        AuditEvent.objects.filter(pk=three_events[0].pk).update(outcome="failure")
    assert AuditEvent.objects.get(pk=three_events[0].pk).outcome == "success"


def test_the_command_reports_an_intact_chain(three_events, capsys):
    call_command("verify_audit_chain")
    assert "intact: 3 events" in capsys.readouterr().out


def test_it_records_the_user_who_acted(dba):
    event = audit.record("target.check", actor=dba, target="embedded")
    assert event.actor == "dana_dba"


# --- What the web server's and the worker's role may do: INSERT and SELECT, nothing else.

def as_portal_role() -> psycopg.Connection:
    """A connection of the role the web server and the worker use, outside the test's transaction."""
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"],
                           passfile=db["OPTIONS"]["passfile"], autocommit=True)


ATTEMPTS = {
    "TRUNCATE": "TRUNCATE portal_auditevent",
    "UPDATE": "UPDATE portal_auditevent SET outcome = 'failure'",
    "DELETE": "DELETE FROM portal_auditevent",
    "DISABLE TRIGGER": "ALTER TABLE portal_auditevent DISABLE TRIGGER USER",
    "DROP": "DROP TABLE portal_auditevent",
    "DROP SCHEMA": "DROP SCHEMA public CASCADE",
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("what", ATTEMPTS)
def test_the_portal_role_cannot_change_the_audit_table(what):
    for i in range(2):
        audit.record("test.kept", actor="tester", details={"i": i})
    with as_portal_role() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(ATTEMPTS[what])
        assert conn.execute("SELECT count(*) FROM portal_auditevent").fetchone()[0] == 2
        conn.execute("INSERT INTO portal_auditevent (created, actor, action, object_type, object_id, target, outcome,"
                     " details, prev_hash, hash) VALUES (now(), 'x', 'x', '', '', '', 'success', '{}', 'p', 'h')")
    assert audit_privileges.problems() == []


def test_privileges_left_to_the_portal_role_are_named(db):
    """What `audit_privileges` would say of a database set up without the superuser's grant."""
    with connection.cursor() as cursor:
        cursor.execute(audit_privileges.CHECKS)
        owns_table, owns_schema, *_ = cursor.fetchone()
    assert (owns_table, owns_schema) == (False, False)
    call_command("audit_privileges")  # the test database is protected, so it says so and exits 0


# --- Tampering by the table's owner, bypassing the portal: the anchors find it.

def as_owner(*statements: sql.Composable) -> None:
    """What an intruder with the owner role's rights could do: switch the triggers off around a change."""
    body = sql.SQL("; ").join([
        sql.SQL("BEGIN"), sql.SQL("SET ROLE {}").format(sql.Identifier("portal_audit")),
        sql.SQL("ALTER TABLE portal_auditevent DISABLE TRIGGER USER"), *statements,
        sql.SQL("ALTER TABLE portal_auditevent ENABLE TRIGGER USER"), sql.SQL("COMMIT")])
    embedded.portal_superuser_sql(body.as_string() + ";", connection.settings_dict["NAME"])


def verify_problems(capsys) -> str:
    with pytest.raises(CommandError, match="NOT intact"):
        call_command("verify_audit_chain")
    return capsys.readouterr().err


@pytest.fixture
def anchored(backup_root) -> list[AuditEvent]:
    """Ten events, anchored in the test's backup location, then two more after the anchor."""
    events = [audit.record("test.step", actor="tester", details={"i": i}) for i in range(10)]
    done = anchors.anchor("test")
    assert done.written == [str(backup_root / "audit-anchors.jsonl")] and not done.failed
    return [*events, audit.record("test.after", actor="tester")]


pytestmark_transactional = pytest.mark.django_db(transaction=True)


@pytestmark_transactional
def test_an_intact_chain_agrees_with_its_anchors(anchored, capsys):
    call_command("verify_audit_chain")
    assert "consistent with 1 anchor(s) in 1 location(s)" in capsys.readouterr().out


@pytestmark_transactional
def test_a_deleted_tail_is_named_against_the_anchor(anchored, capsys):
    cut, head = anchored[6].pk, anchored[9].pk
    as_owner(sql.SQL("DELETE FROM portal_auditevent WHERE id > {}").format(cut))
    assert audit.verify_chain().intact, "what is left is a whole chain: only the anchor tells"
    assert f"events after #{cut} up to #{head} are gone" in verify_problems(capsys)


@pytestmark_transactional
def test_an_emptied_table_is_named_against_the_anchor(anchored, capsys):
    as_owner(sql.SQL("TRUNCATE portal_auditevent"))
    assert audit.verify_chain().intact, "an empty chain is a whole chain: only the anchor tells"
    (anchor,), _ = anchors.anchors()
    problems = verify_problems(capsys)
    assert "the audit table is empty, but the anchor of" in problems
    assert f"names {anchor.count} events up to #{anchored[9].pk}: the table was emptied" in problems
    assert anchor.count >= 10


@pytestmark_transactional
def test_a_rewritten_row_with_a_recomputed_chain_is_named_against_the_anchor(anchored, capsys):
    """The owner changes one event and re-hashes every row after it: the chain alone looks whole."""
    changed = anchored[4]
    rows = list(AuditEvent.objects.filter(id__gte=changed.pk).order_by("id"))
    rows[0].actor = "somebody_else"
    previous, updates = anchored[3].hash, []
    for row in rows:
        row.prev_hash = previous
        row.hash = previous = row.compute_hash()
        updates.append(sql.SQL("UPDATE portal_auditevent SET actor = {}, prev_hash = {}, hash = {} WHERE id = {}")
                       .format(row.actor, row.prev_hash, row.hash, row.pk))
    as_owner(*updates)
    assert audit.verify_chain().intact, "the re-hashed chain links up"
    head = anchored[9].pk
    assert f"an event up to #{head} was rewritten and the chain re-hashed: #{head}'s hash differs from the " \
           "anchor of" in verify_problems(capsys)


@pytestmark_transactional
def test_an_edited_anchor_file_is_reported(anchored, backup_root, capsys):
    with open(backup_root / "audit-anchors.jsonl", "a") as out:
        out.write("{not json\n")
    assert "audit-anchors.jsonl:2: not an anchor (the file was edited?)" in verify_problems(capsys)
