"""The sample PAWS360 database, built for real on the embedded cluster at a small scale."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from psycopg import sql

from portal import embedded, pg
from portal.embedded import sample
from portal.models import AuditEvent

SCALE = 0.02

# Columns that do not depend on now(): two builds at the same scale must agree on them.
CONTENT = {
    "paws360.users": "id, username, email, password_hash, role",
    "paws360.students": "id, user_id, student_number, first_name, last_name, date_of_birth, major, gpa, status",
    "paws360.courses": "*",
    "paws360.enrollments": "*",
    "paws360.sessions": "id, user_id, token, ip",
    "paws360.notifications": "id, user_id, kind, body",
    "audit.audit_log": "id, user_id, action, table_name, row_id, details",
}


def _unique_target() -> pg.Target:
    return embedded.target(f"paws360_test_sample_{secrets.token_hex(4)}")


def _scalar(target: pg.Target, query: str) -> Any:
    with pg.connect(target) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _fingerprint(target: pg.Target) -> dict[str, str]:
    """An md5 of each table's time-independent columns, in id order."""
    query = "SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM (SELECT {columns} FROM {table}) AS t"
    return {table: _scalar(target, query.format(columns=columns, table=table)) for table, columns in CONTENT.items()}


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[pg.Target, dict[str, int]]]:
    """One sample database shared by the tests that only read it; dropped afterwards."""
    target = _unique_target()
    try:
        yield target, sample.build(target, SCALE)
    finally:
        sample.drop(target)


@pytest.fixture
def spare() -> Iterator[pg.Target]:
    """The name of a database that does not exist yet; dropped afterwards if a test created it."""
    target = _unique_target()
    try:
        yield target
    finally:
        sample.drop(target)


def test_it_returns_the_real_row_count_of_every_table(built):
    target, counts = built
    assert list(counts) == list(sample.TABLES)
    with pg.connect(target) as conn:
        for table, rows in counts.items():
            schema, name = table.split(".")
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            assert conn.execute(query).fetchone() == (rows,), table


def test_the_counts_are_a_pure_function_of_the_scale(built):
    _, counts = built
    assert counts == sample.row_counts(SCALE) == sample.row_counts(SCALE)
    assert sample.row_counts(1)["paws360.users"] == 15_000
    assert min(sample.row_counts(0.000001).values()) == 1
    with pytest.raises(ValueError, match="positive"):
        sample.row_counts(0)


def test_two_builds_at_the_same_scale_hold_the_same_rows(built, spare):
    target, _ = built
    sample.build(spare, SCALE)
    assert _fingerprint(spare) == _fingerprint(target)


def test_it_leaves_expired_sessions_to_clean_up(built):
    target, counts = built
    old = _scalar(target, "SELECT count(*) FROM paws360.sessions WHERE expires_at < now() - interval '30 days'")
    live = _scalar(target, "SELECT count(*) FROM paws360.sessions WHERE expires_at > now()")
    assert counts["paws360.sessions"] * 0.5 < old < counts["paws360.sessions"]
    assert live > 0


def test_old_notifications_are_mostly_read_but_many_are_not(built):
    target, _ = built
    old_read, old_unread, new_read, new_unread = (_scalar(target, f"""
        SELECT count(*) FROM paws360.notifications
        WHERE created_at {age} now() - interval '90 days' AND is_read = {read}
    """) for age, read in (("<", "true"), ("<", "false"), (">=", "true"), (">=", "false")))
    assert old_read > old_unread > 0.1 * (old_read + old_unread)
    assert old_read / (old_read + old_unread) > new_read / (new_read + new_unread)
    assert _scalar(target, "SELECT min(created_at) > now() - interval '181 days' FROM paws360.notifications")


def test_about_a_third_of_the_audit_log_is_older_than_two_years(built):
    target, counts = built
    old = _scalar(target, """SELECT count(*) FROM audit.audit_log WHERE "timestamp" < now() - interval '2 years'""")
    assert 0.3 < old / counts["audit.audit_log"] < 0.37
    assert _scalar(target, """SELECT min("timestamp") > now() - interval '3 years 1 day' FROM audit.audit_log""")


def test_it_refuses_to_overwrite_an_existing_database(built):
    target, counts = built
    with pytest.raises(sample.SampleExists, match="already exists"):
        sample.build(target, SCALE)
    assert _scalar(target, "SELECT count(*) FROM paws360.users") == counts["paws360.users"]


def test_replace_ends_other_sessions_and_rebuilds(spare):
    sample.build(spare, SCALE)
    before = _fingerprint(spare)
    with pg.connect(spare) as bystander:
        counts = sample.build(spare, SCALE, replace=True)
        with pytest.raises(psycopg.OperationalError):
            bystander.execute("SELECT 1")
    assert counts == sample.row_counts(SCALE)
    assert _fingerprint(spare) == before


def test_a_failed_build_drops_what_it_created(spare, monkeypatch):
    monkeypatch.setattr(sample, "FOREIGN_KEYS", [*sample.FOREIGN_KEYS, "ALTER TABLE paws360.nowhere ADD x int"])
    with pytest.raises(psycopg.errors.UndefinedTable):
        sample.build(spare, SCALE)
    assert not sample.exists(spare)


def test_it_refuses_to_touch_the_maintenance_database():
    with pytest.raises(ValueError, match="refusing"):
        sample.build(embedded.target("postgres"), SCALE, replace=True)


@pytest.mark.django_db
def test_the_command_builds_reports_and_records_it(spare):
    out = StringIO()
    call_command("seed_paws360", scale=SCALE, database=spare.dbname, stdout=out)
    assert "paws360.enrollments" in out.getvalue()
    assert re.search(rf"^{spare.dbname}: \d+ (kB|MB) in ", out.getvalue(), re.MULTILINE)
    event = AuditEvent.objects.get(action="sample.seed")
    assert (event.actor, event.outcome, event.target) == ("system:seed", AuditEvent.Outcome.SUCCESS, str(spare))
    assert event.details == {"counts": sample.row_counts(SCALE), "scale": SCALE}


@pytest.mark.django_db
def test_the_command_skips_an_existing_database_if_asked(built):
    target, _ = built
    out = StringIO()
    call_command("seed_paws360", scale=SCALE, database=target.dbname, if_missing=True, stdout=out)
    assert out.getvalue() == ""
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_the_command_records_a_failure(built):
    target, _ = built
    with pytest.raises(CommandError, match="already exists"):
        call_command("seed_paws360", scale=SCALE, database=target.dbname, stdout=StringIO())
    event = AuditEvent.objects.get(action="sample.seed")
    assert event.outcome == AuditEvent.Outcome.FAILURE
    assert "already exists" in event.details["error"]
