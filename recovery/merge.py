"""Bringing a table's rows from a scratch database into production, inside the caller's transaction.

The rows are streamed with COPY from the scratch database into a temporary table on production's connection (text
format: it carries user-defined types between databases, where the binary format's type OIDs differ). There they
are compared with production's table by primary key and merged with one of three policies:

- new_table: into a new table `<table>_restored_<time>` beside it; production's table is not touched.
- insert_missing: the backup's rows whose key production lacks are inserted; existing rows are left alone.
- replace_rows: the table's rows become the backup's: rows whose key the backup lacks are deleted, rows that
  differ are updated, missing rows inserted. A row still referenced by a foreign key cannot be deleted: the
  statement fails and the caller's transaction rolls back.

Nothing here commits; the caller commits once every count checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

SAMPLE_KEYS = 5
LOCK_TIMEOUT = "30s"

COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> ''
FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
PRIMARY_KEY = """
SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n
"""


class MergeRefused(Exception):
    """The merge cannot be done as asked; the message says why and what would work."""


@dataclass(frozen=True)
class Table:
    schema: str
    name: str

    @classmethod
    def parse(cls, label: str) -> Table:
        schema, _, name = label.strip().partition(".")
        if not schema or not name:
            raise ValueError(f"{label!r}: give the table as schema.table, e.g. paws360.students")
        return cls(schema, name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def regclass(self) -> str:
        """The name as to_regclass() reads it."""
        return f"{quote(self.schema)}.{quote(self.name)}"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Preview:
    backup_rows: int
    production_rows: int | None
    only_in_backup: int = 0
    only_in_production: int = 0
    differing: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def columns(conn: psycopg.Connection, relation: str) -> list[tuple[str, str, bool]]:
    """(name, type, generated) of each column of `relation` (as to_regclass reads it), in order; [] when there
    is no such table."""
    return conn.execute(COLUMNS, [relation]).fetchall()


def primary_key(conn: psycopg.Connection, table: Table) -> list[str]:
    return [name for (name,) in conn.execute(PRIMARY_KEY, [table.regclass()]).fetchall()]


def temp_label(table: Table) -> str:
    return f"restored_{table.schema}_{table.name}"[:63]


def temp_name(table: Table) -> sql.Identifier:
    return sql.Identifier(temp_label(table))


def copy_into_temp(scratch: psycopg.Connection, production: psycopg.Connection, table: Table) -> int:
    """Stream the scratch table's rows into a temporary table on production's connection; the rows copied."""
    definition = [(name, kind) for name, kind, _ in columns(scratch, table.regclass())]
    temp = temp_name(table)
    production.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        temp, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in definition)))
    names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in definition)
    with (scratch.cursor().copy(sql.SQL("COPY {} ({}) TO STDOUT").format(table.ident, names)) as out,
          production.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(temp, names)) as into):
        for block in out:
            into.write(block)
    production.execute(sql.SQL("ANALYZE {}").format(temp))
    return production.execute(sql.SQL("SELECT count(*) FROM {}").format(temp)).fetchone()[0]


@dataclass
class Shape:
    """What the merge compares and writes: the key, and the columns both sides have (production's generated ones
    excepted)."""

    key: list[str]
    columns: list[str]

    def keys_equal(self) -> sql.Composable:
        return sql.SQL(" AND ").join(sql.SQL("p.{0} = r.{0}").format(sql.Identifier(k)) for k in self.key)

    def as_text(self, alias: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL("{}.{}::text").format(sql.Identifier(alias), sql.Identifier(c))
                                  for c in self.columns)

    def column_list(self, alias: str | None = None) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in self.columns)


def shape(production: psycopg.Connection, table: Table, policy: str) -> Shape | None:
    """The comparison's shape, or None when production has no such table. Refuses a merge into production that
    cannot be done safely: no primary key, or columns that changed since the backup."""
    produced = columns(production, table.regclass())
    if not produced:
        if policy != "new_table":
            raise MergeRefused(f"production has no table {table.label}: recover it with the new-table policy")
        return None
    restored = {name for name, _, _ in columns(production, f"pg_temp.{quote(temp_label(table))}")}
    generated = {name for name, _, is_generated in produced if is_generated}
    writable = [name for name, _, is_generated in produced if not is_generated]
    key = primary_key(production, table)
    if policy != "new_table":
        if not key:
            raise MergeRefused(f"{table.label} has no primary key to match rows by: use the new-table policy")
        only_production = sorted(set(writable) - restored)
        only_backup = sorted(restored - set(writable) - generated)
        if only_production or only_backup:
            raise MergeRefused(f"the columns of {table.label} changed since the backup (only in production: "
                               f"{', '.join(only_production) or 'none'}; only in the backup: "
                               f"{', '.join(only_backup) or 'none'}): use the new-table policy")
    common = [name for name in writable if name in restored]
    return Shape(key if set(key) <= set(common) else [], common)


def preview(production: psycopg.Connection, table: Table, form: Shape | None, backup_rows: int) -> Preview:
    """How the backup's rows and production's differ, by primary key: counts and a few sample keys."""
    if form is None:
        return Preview(backup_rows, None, only_in_backup=backup_rows)
    temp, prod = temp_name(table), table.ident
    result = Preview(backup_rows, _count(production, prod))
    if not form.key:
        return result
    queries = {
        "only_in_backup": sql.SQL("FROM {} r WHERE NOT EXISTS (SELECT FROM {} p WHERE {})").format(
            temp, prod, form.keys_equal()),
        "only_in_production": sql.SQL("FROM {} p WHERE NOT EXISTS (SELECT FROM {} r WHERE {})").format(
            prod, temp, form.keys_equal()),
        "differing": sql.SQL("FROM {} r JOIN {} p ON {} WHERE ({}) IS DISTINCT FROM ({})").format(
            temp, prod, form.keys_equal(), form.as_text("r"), form.as_text("p")),
    }
    alias = {"only_in_backup": "r", "only_in_production": "p", "differing": "r"}
    for name, rest in queries.items():
        setattr(result, name, production.execute(sql.SQL("SELECT count(*) ") + rest).fetchone()[0])
        keyed = sql.SQL(", ").join(sql.Identifier(alias[name], k) for k in form.key)
        rows = production.execute(sql.SQL("SELECT {} {} ORDER BY {} LIMIT {}").format(
            keyed, rest, keyed, sql.Literal(SAMPLE_KEYS))).fetchall()
        result.samples[name] = [", ".join(str(v) for v in row) for row in rows]
    return result


def _count(conn: psycopg.Connection, relation: sql.Composable) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation)).fetchone()[0]


def lock(production: psycopg.Connection, table: Table) -> None:
    """Writers wait while the merge runs (readers do not), so the preview is what the merge does."""
    production.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
    production.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table.ident))


def into_new_table(production: psycopg.Connection, table: Table, form: Shape | None, suffix: str) -> dict[str, Any]:
    new = Table(table.schema, f"{table.name}_{suffix}"[:63])
    temp = temp_name(table)
    production.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(new.ident, temp))
    inserted = production.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(new.ident, temp)).rowcount
    if form is not None and form.key:
        production.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
            new.ident, sql.SQL(", ").join(sql.Identifier(k) for k in form.key)))
    return {"new_table": new.label, "inserted": inserted}


def insert_missing(production: psycopg.Connection, table: Table, form: Shape) -> int:
    return production.execute(sql.SQL(
        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} r WHERE NOT EXISTS "
        "(SELECT FROM {} p WHERE {})").format(
        table.ident, form.column_list(), form.column_list("r"), temp_name(table), table.ident,
        form.keys_equal())).rowcount


def delete_extra(production: psycopg.Connection, table: Table, form: Shape) -> int:
    return production.execute(sql.SQL("DELETE FROM {} p WHERE NOT EXISTS (SELECT FROM {} r WHERE {})").format(
        table.ident, temp_name(table), form.keys_equal())).rowcount


def update_differing(production: psycopg.Connection, table: Table, form: Shape) -> int:
    values = [c for c in form.columns if c not in form.key]
    if not values:
        return 0
    targets = sql.SQL(", ").join(sql.Identifier(c) for c in values)
    sources = sql.SQL(", ").join(sql.Identifier("r", c) for c in values)
    return production.execute(sql.SQL(
        "UPDATE {} p SET ({}) = ROW({}) FROM {} r WHERE {} AND ({}) IS DISTINCT FROM ({})").format(
        table.ident, targets, sources, temp_name(table), form.keys_equal(), form.as_text("r"),
        form.as_text("p"))).rowcount


def catch_up_sequences(production: psycopg.Connection, table: Table) -> list[str]:
    """Identity and serial sequences moved past the largest value restored, so new rows do not collide."""
    moved = []
    for name, _, _ in columns(production, table.regclass()):
        sequence = production.execute("SELECT pg_get_serial_sequence(%s, %s)", [table.regclass(), name]).fetchone()[0]
        if not sequence:
            continue
        row = production.execute(sql.SQL(
            "SELECT setval(%s, m) FROM (SELECT max({}) AS m FROM {}) x "
            "WHERE m > coalesce(pg_sequence_last_value(%s::regclass), 0)").format(sql.Identifier(name), table.ident),
            [sequence, sequence]).fetchone()
        if row:
            moved.append(f"{sequence} moved to {row[0]}")
    return moved
