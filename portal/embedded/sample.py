"""The sample PAWS360 database: a student-information schema with realistic data, built server-side.

`build()` creates the database, its tables, loads every row with `INSERT ... SELECT FROM generate_series`,
then adds keys, indexes and foreign keys and runs ANALYZE. Row counts are a pure function of `scale`
(`row_counts()`), and every value is derived from the row number by multiplicative hashing, never
`random()`, so two builds at the same scale hold the same rows apart from the times, which are relative
to `now()`: expired sessions, old unread notifications and audit rows older than two years give the
maintenance operations real work.

Measured on the embedded cluster (PostgreSQL 15, 2 cores) with `manage.py seed_paws360 --scale N`; size is
`pg_database_size`, about 64 MB per unit of scale on top of an empty database's 7.5 MB:
  scale 0.02:  9.5 MB,   0.5 s  (tests)
  scale 1:     68 MB,    3.5 s  (the demo default; 15,000 users, 80,000 audit rows)
  scale 17:    1028 MB,  46 s   (about 1 GB; 255,000 users, 1.5 million enrollments, 1.36 million audit rows)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import psycopg
from django.conf import settings
from psycopg import sql

from portal import pg
from portal.embedded.sample_sql import FOREIGN_KEYS, HELPERS, INDEXES, KEYS, LOAD, SCHEMA

Progress = Callable[[str], None] | None

# Rows per table at scale 1. Students are not scaled on their own: every tenth user (id 10, 20, ...) is
# staff, the other nine are students.
BASE_ROWS = {
    "paws360.users": 15_000,
    "paws360.courses": 450,
    "paws360.enrollments": 90_000,
    "paws360.sessions": 40_000,
    "paws360.notifications": 60_000,
    "audit.audit_log": 80_000,
}
TABLES = (
    "paws360.users", "paws360.students", "paws360.courses", "paws360.enrollments", "paws360.sessions",
    "paws360.notifications", "audit.audit_log",
)
TERMS = 7  # 2022FA .. 2025FA, the current term; a student takes a course at most once a term.

# Databases build() never drops, whatever the caller asks.
PROTECTED = frozenset({"postgres", "template0", "template1"})


class SampleExists(Exception):
    """The sample database is already there and the caller did not ask to replace it."""


def row_counts(scale: float) -> dict[str, int]:
    """The number of rows each table gets at `scale`: a pure function, at least one row each."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale}")
    scaled = {table: max(1, round(base * scale)) for table, base in BASE_ROWS.items()}
    users = scaled["paws360.users"]
    students = users - users // 10
    # No more enrollments than (student, course, term) combinations, so that each is unique at tiny scales.
    combinations = students * scaled["paws360.courses"] * TERMS
    counts = scaled | {"paws360.students": students}
    counts["paws360.enrollments"] = min(scaled["paws360.enrollments"], combinations)
    return {table: counts[table] for table in TABLES}


# Inlined SQL helpers, dropped with the session. mix() is Knuth's multiplicative hash: bits 8..31 of
# i * an odd constant, so each column gets its own spread of the row number by using its own constant.
def build(target: pg.Target, scale: float, *, replace: bool = False, on_progress: Progress = None) -> dict[str, int]:
    """Create the database `target.dbname` and fill it; return the rows in each table, counted.

    Raises `SampleExists` if the database is there and `replace` is false; with `replace` it is dropped
    first, its connections ended. A build that fails drops what it created.
    """
    counts = row_counts(scale)
    _refuse_protected(target.dbname)
    say = on_progress or (lambda message: None)
    if exists(target):
        if not replace:
            raise SampleExists(f"database {target.dbname!r} already exists on {target.host}:{target.port}; "
                               "rebuild it with replace (seed_paws360 --replace)")
        say(f"dropping database {target.dbname}")
        drop(target)
    say(f"creating database {target.dbname}")
    _create_database(target)
    try:
        with pg.connect(target, purpose="sample", statement_timeout_ms=0) as conn:
            _fill(conn, counts, say)
            return _count(conn)
    except BaseException:
        _drop_quietly(target)
        raise


def exists(target: pg.Target) -> bool:
    with pg.connect(target.on("postgres"), purpose="sample") as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [target.dbname]).fetchone()
    return row is not None


def drop(target: pg.Target) -> None:
    """Drop the database if it is there, ending the sessions connected to it."""
    _refuse_protected(target.dbname)
    with pg.connect(target.on("postgres"), purpose="sample", statement_timeout_ms=0) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target.dbname)))


def _drop_quietly(target: pg.Target) -> None:
    """Clean up after a failed build without hiding why it failed."""
    with contextlib.suppress(psycopg.Error):
        drop(target)


def size_pretty(target: pg.Target) -> str:
    with pg.connect(target, purpose="sample") as conn:
        row = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    assert row is not None
    return row[0]


def _refuse_protected(dbname: str) -> None:
    if dbname in PROTECTED or dbname == settings.DATABASES["default"]["NAME"]:
        raise ValueError(f"refusing to build the sample into {dbname!r}")


def _create_database(target: pg.Target) -> None:
    with pg.connect(target.on("postgres"), purpose="sample", statement_timeout_ms=0) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname)))
        except psycopg.errors.DuplicateDatabase as exc:
            raise SampleExists(f"database {target.dbname!r} was created by someone else meanwhile") from exc


def _fill(conn: psycopg.Connection, counts: dict[str, int], say: Callable[[str], None]) -> None:
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    _run(conn, HELPERS + SCHEMA)
    params = {table.split(".")[1]: n for table, n in counts.items()} | {"terms": TERMS}
    for table, statement in LOAD.items():
        say(f"loading {table}: {counts[table]:,} rows")
        conn.execute(statement, params)
        conn.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, counts[table]])
    for step, statements in (("primary keys", KEYS), ("indexes", INDEXES), ("foreign keys", FOREIGN_KEYS)):
        say(f"adding {step}")
        _run(conn, statements)
    say("analyzing")
    conn.execute("ANALYZE")


def _run(conn: psycopg.Connection, statements: list[str]) -> None:
    for statement in statements:
        conn.execute(statement)


def _count(conn: psycopg.Connection) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        schema, name = table.split(".")
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
        assert row is not None
        counts[table] = row[0]
    return counts
