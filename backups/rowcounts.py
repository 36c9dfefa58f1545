"""Exact row counts of every user table of a database, taken in a snapshot: a logical backup's manifest, and what
its verification compares the restore with. `IdleCoreCounter` counts while a parallel pg_dump leaves a job idle (its
tail), so the counts do not compete with the dump for the same cores."""


from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg import sql

USER_TABLES = """
SELECT n.nspname, c.relname,
       (c.relpages + coalesce(t.relpages, 0))::bigint * current_setting('block_size')::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    size: int  # bytes, as of the last VACUUM or ANALYZE

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


def user_tables(conn: psycopg.Connection) -> list[Table]:
    """Every table whose rows pg_dump dumps: ordinary tables outside the system schemas, not an extension's."""
    return [Table(*row) for row in conn.execute(USER_TABLES).fetchall()]


def count_rows(conn: psycopg.Connection, tables: list[Table]) -> dict[str, int]:
    counts = {}
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(table.schema, table.name))
        counts[table.label] = conn.execute(query).fetchone()[0]
    return counts


FINISHED_TABLE = re.compile(r"finished item (\d+) TABLE DATA ")  # pg_dump --verbose, parallel


class IdleCoreCounter:
    """Exact row counts in the backup's snapshot, on a thread of its own, started when a parallel pg_dump leaves
    one of its jobs idle: no table left waiting and fewer tables being dumped than jobs (the end of the dump,
    where the biggest table runs alone). Counting from the start competes with the dump for the same cores; the
    ~1 GB sample's 0.4 s of counting then fits in the tail. With one job (the custom format) it starts at once."""

    def __init__(self, pool: ThreadPoolExecutor, conn: psycopg.Connection, tables: list[Table], jobs: int) -> None:
        self._waiting_for = len(tables) - jobs + 1  # finished tables that leave a job idle
        self._finished = 0
        self._abandoned = False
        self._go = threading.Event()
        if jobs <= 1 or self._waiting_for <= 0:
            self._go.set()
        self._counts = pool.submit(self._count, conn, tables)

    def _count(self, conn: psycopg.Connection, tables: list[Table]) -> dict[str, int]:
        self._go.wait()
        return {} if self._abandoned else count_rows(conn, tables)

    def on_line(self, line: str) -> None:
        if FINISHED_TABLE.search(line):
            self._finished += 1
            if self._finished >= self._waiting_for:
                self._go.set()

    @property
    def started(self) -> bool:
        return self._go.is_set()

    def abandon(self) -> None:
        """pg_dump failed: no counting (one already running is cancelled with the snapshot's connection)."""
        self._abandoned = True
        self._go.set()

    def result(self) -> dict[str, int]:
        self._go.set()  # pg_dump has ended (or failed): count what is left now
        return self._counts.result()
