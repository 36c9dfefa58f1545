"""Single-table recovery: the runbook's Scenario 3, corrected for PostgreSQL 15.

The seed's `pg_restore --table=paws360.students --data-only` into an empty database fails (`-t` takes no schema
name, and data needs a table to go into), and its `--column-inserts` replay duplicates rows. Here:

1. the tables must be in the backup (the error lists the tables it has);
2. a scratch database on the scratch cluster (never on production: `portal.scratch`; refused without one that can
   take it) gets the schema's definitions (`--section=pre-data -n <schema>`: the table, and the types
   and sequences it may use) and then the table's rows (`--section=data -n <schema> -t <table>`); its row count
   must match the backup's manifest;
3. on one connection to production, in one transaction: the rows are streamed from the scratch database (a second
   connection) into a temporary table, production
   is locked against writers, the difference by primary key is recorded (rows only in the backup, only in
   production, differing: counts and sample keys), the merge policy applied (recovery/merge.py), the counts
   checked, and only then committed. Any error, a violated constraint included, rolls everything back;
4. the scratch database is dropped, whatever happened.

Several tables are merged in the order given (parents before children) in the same transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from backups import leases
from backups.models import Backup
from portal import pg
from portal.jobs import Reporter
from recovery import cleanup, databases, merge, objectives
from recovery.merge import Table
from recovery.models import RecoveryRequest, RecoveryStep
from recovery.restoring import RestoreFailed, checked_backup, create_scratch, restore_into
from recovery.steps import Steps

CHECK = "Check the backup and the tables"
SCRATCH = "Restore the tables into a scratch database"
COMPARE = "Compare with production by primary key"
MERGE = "Merge into production in one transaction"
DROP = "Drop the scratch database"
SCRATCH_PREFIX = "portal_table_"


class TableNotInBackup(Exception):
    pass


def tables_of(request: RecoveryRequest) -> list[Table]:
    return [Table.parse(label) for label in request.tables]


def missing_tables(backup: Backup, tables: list[str]) -> str:
    """Why some of `tables` cannot come from `backup`, naming what it has; "" when all are there."""
    has = sorted(backup.manifest.get("tables", {}))
    absent = [label for label in tables if label not in has]
    if not absent:
        return ""
    return (f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in backup #{backup.pk}; "
            f"it has: {', '.join(has) or 'no tables'}")


def recover_tables(request: RecoveryRequest, reporter: Reporter) -> None:
    steps = Steps(request, reporter, [CHECK, SCRATCH, COMPARE, MERGE, DROP])
    tables = tables_of(request)
    with cleanup.scratch_dropped(request, steps, DROP):
        with steps.run(CHECK) as step:
            backup = checked_backup(request, steps, step)
            absent = missing_tables(backup, [t.label for t in tables])
            if absent:
                raise TableNotInBackup(absent)
            steps.log(step, "it has " + ", ".join(
                f"{t.label} ({backup.manifest['tables'][t.label]:,} rows)" for t in tables))
        with leases.hold(backup, f"recovery:{request.pk}"), steps.run(SCRATCH) as step:
            scratch = restore_scratch(request, backup, tables, steps, step)
        merge_into_production(request, scratch, tables, steps)
    assert request.database is not None
    request.result_database = request.database.name
    request.save(update_fields=["result_database"])


def restore_scratch(request: RecoveryRequest, backup: Backup, tables: list[Table], steps: Steps,
                    step: RecoveryStep) -> pg.Target:
    """The schemas' definitions, then only the tables' rows, each table counted against the manifest."""
    assert request.database is not None
    scratch = create_scratch(request, SCRATCH_PREFIX, backup, steps, step)
    schemas = sorted({t.schema for t in tables})
    with pg.connect(scratch, purpose="recovery-scratch") as conn:
        for schema in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    namespaces = tuple(f"--schema={schema}" for schema in schemas)
    restore_into(backup, scratch, steps, step, extra_args=("--section=pre-data", *namespaces), jobs=1,
                 onto_scratch=True)
    only = tuple(f"--table={t.name}" for t in tables)
    restore_into(backup, scratch, steps, step, extra_args=("--section=data", *namespaces, *only), jobs=1,
                 onto_scratch=True)
    with pg.connect(scratch, purpose="recovery-scratch", statement_timeout_ms=0) as conn:
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident)).fetchone()[0]
            expected = backup.manifest["tables"][table.label]
            if rows != expected:
                raise RestoreFailed(f"{table.label}: {rows} rows restored, {expected} in the backup's manifest")
            steps.log(step, f"{table.label}: {rows:,} rows restored, as in the backup's manifest")
    return scratch


def merge_into_production(request: RecoveryRequest, scratch: pg.Target, tables: list[Table], steps: Steps) -> None:
    assert request.database is not None
    policy = request.merge_policy
    suffix = f"restored_{databases.stamp()}"
    results: dict[str, Any] = {}
    with (pg.connect(scratch, purpose="recovery-copy", statement_timeout_ms=0) as source,
          pg.connect(request.database.target(), purpose="recovery-merge", statement_timeout_ms=0,
                     autocommit=False) as production):
        with steps.run(COMPARE) as step:
            shapes = {t: compare(source, production, t, policy, steps, step, results) for t in tables}
            request.verification["tables"] = results
            request.save(update_fields=["verification"])
        with steps.run(MERGE) as step:
            for table in (reversed(tables) if policy == RecoveryRequest.MergePolicy.REPLACE_ROWS else []):
                results[table.label]["deleted"] = merge.delete_extra(production, table, shapes[table])
            for table in tables:
                results[table.label] |= apply(production, table, shapes[table], policy, suffix)
                steps.log(step, f"{table.label}: {describe(results[table.label])}")
            for table in tables:
                check_after(production, table, shapes[table], policy, results[table.label])
            production.commit()
            steps.log(step, "committed: every count checked")
    request.verification["tables"] = results
    request.verification["verified"] = True
    request.save(update_fields=["verification"])
    first = steps.first_started()
    assert first is not None and first.started is not None
    objectives.record_rto(request, first.started, "the merge committed and checked")


def compare(source: psycopg.Connection, production: psycopg.Connection, table: Table, policy: str, steps: Steps,
            step: RecoveryStep, results: dict[str, Any]) -> merge.Shape | None:
    copied = merge.copy_into_temp(source, production, table)
    form = merge.shape(production, table, policy)
    if form is not None and policy != RecoveryRequest.MergePolicy.NEW_TABLE:
        merge.lock(production, table)
    preview = merge.preview(production, table, form, copied)
    results[table.label] = {"policy": policy, "preview": preview.as_dict()}
    steps.log(step, f"{table.label}: {copied:,} rows in the backup, "
                    f"{'no such table' if preview.production_rows is None else f'{preview.production_rows:,}'}"
                    f" in production; only in the backup {preview.only_in_backup:,}"
                    f" {_keys(preview.samples.get('only_in_backup'))}, only in production"
                    f" {preview.only_in_production:,} {_keys(preview.samples.get('only_in_production'))},"
                    f" differing {preview.differing:,} {_keys(preview.samples.get('differing'))}")
    return form


def _keys(samples: list[str] | None) -> str:
    return f"(keys {'; '.join(samples)}{', ...' if len(samples) == merge.SAMPLE_KEYS else ''})" if samples else ""


def apply(production: psycopg.Connection, table: Table, form: merge.Shape | None, policy: str,
          suffix: str) -> dict[str, Any]:
    if policy == RecoveryRequest.MergePolicy.NEW_TABLE:
        return merge.into_new_table(production, table, form, suffix)
    assert form is not None
    result: dict[str, Any] = {}
    if policy == RecoveryRequest.MergePolicy.REPLACE_ROWS:
        result["updated"] = merge.update_differing(production, table, form)
    result["inserted"] = merge.insert_missing(production, table, form)
    result["sequences"] = merge.catch_up_sequences(production, table)
    return result


def describe(result: dict[str, Any]) -> str:
    parts = [f"{result[k]:,} rows {k}" for k in ("deleted", "updated", "inserted") if k in result]
    if "new_table" in result:
        parts.append(f"into the new table {result['new_table']}")
    return ", ".join(parts + result.get("sequences", []))


def check_after(production: psycopg.Connection, table: Table, form: merge.Shape | None, policy: str,
                result: dict[str, Any]) -> None:
    """The counts the policy promises, read back inside the transaction; a mismatch rolls everything back."""
    backup_rows = result["preview"]["backup_rows"]
    if policy == RecoveryRequest.MergePolicy.NEW_TABLE:
        rows = production.execute(sql.SQL("SELECT count(*) FROM {}").format(
            Table.parse(result["new_table"]).ident)).fetchone()[0]
        problems = [] if rows == backup_rows else [f"{rows} rows in {result['new_table']}, {backup_rows} in the backup"]
    else:
        assert form is not None
        after = merge.preview(production, table, form, backup_rows)
        result["after"] = after.as_dict()
        problems = [f"{after.only_in_backup} rows of the backup still missing"] if after.only_in_backup else []
        if policy == RecoveryRequest.MergePolicy.REPLACE_ROWS:
            if after.only_in_production or after.differing or after.production_rows != backup_rows:
                problems.append(f"{after.production_rows} rows now, {backup_rows} in the backup; "
                                f"{after.only_in_production} extra, {after.differing} differing")
        else:
            expected = result["preview"]["production_rows"] + result["inserted"]
            if after.production_rows != expected:
                problems.append(f"{after.production_rows} rows now, expected {expected}")
    if problems:
        raise RestoreFailed(f"{table.label}: counts do not add up after the merge ({'; '.join(problems)}); "
                            "rolled back")


