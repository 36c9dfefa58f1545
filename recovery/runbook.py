"""The runbook's row-count query (Scenario 1, step 4), as written there: the users, students, courses and enrollments
of the PAWS360 schema. Complete restores, point-in-time recoveries and promotions all check with this one."""

from __future__ import annotations

from portal import pg

TABLES = ("users", "students", "courses", "enrollments")
QUERY = """
SELECT 'users' AS table_name, count(*) AS row_count FROM paws360.users
UNION ALL SELECT 'students', count(*) FROM paws360.students
UNION ALL SELECT 'courses', count(*) FROM paws360.courses
UNION ALL SELECT 'enrollments', count(*) FROM paws360.enrollments
"""


def runbook_counts(target: pg.Target) -> dict[str, int]:
    """{table: rows} of the runbook's query on the database; empty for a database without those tables (not the
    PAWS360 schema: the query does not apply)."""
    with pg.connect(target, purpose="runbook-counts", statement_timeout_ms=0) as conn:
        missing = conn.execute("SELECT count(*) FROM unnest(%s::text[]) t WHERE to_regclass('paws360.' || t) IS NULL",
                               [list(TABLES)]).fetchone()[0]
        return {} if missing else dict(conn.execute(QUERY).fetchall())
