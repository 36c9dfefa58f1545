"""Databases a recovery creates, checks, renames and drops, on the cluster of the database it recovers.

Nothing here drops a production database: `drop()` refuses any name registered as production, the portal's own
database and PostgreSQL's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from django.conf import settings
from django.utils import timezone
from psycopg import sql

from portal import pg
from portal.models import ManagedCluster, ManagedDatabase

MAX_NAME = 63
PROTECTED = frozenset({"postgres", "template0", "template1"})
# Settings whose value is a list: each element is quoted on its own, as pg_dump does.
LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "local_preload_libraries",
                           "session_preload_libraries"})
SWAP_WAIT_SECONDS = 30


class DatabaseError(Exception):
    pass


def stamp() -> str:
    """UTC, lower case and digits only: names made with it need no quoting in SQL."""
    return f"{timezone.now():%Y%m%d_%H%M%S}"


def derived_name(base: str, suffix: str) -> str:
    """`<base>_<suffix>`, the base shortened so the whole fits PostgreSQL's 63 bytes."""
    return f"{base[:MAX_NAME - len(suffix) - 1]}_{suffix}"


def admin_connection(cluster: ManagedCluster) -> psycopg.Connection:
    return pg.connect(cluster.target("postgres"), purpose="recovery", statement_timeout_ms=0)


def exists(cluster: ManagedCluster, name: str) -> bool:
    with admin_connection(cluster) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def create_like(cluster: ManagedCluster, name: str, model: str) -> None:
    """Create the empty database `name` with what pg_dump leaves out of `model` without --create: its owner,
    encoding, locale, privileges, settings (its own and each role's in it), comment and security labels; with
    template0's when `model` is gone. Its connection limit is copied once the restore is done
    (`copy_connection_limit`): a low one would keep the restore's own connections out."""
    ident = sql.Identifier(name)
    with admin_connection(cluster) as conn:
        row = conn.execute("SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, oid"
                           " FROM pg_database WHERE datname = %s", [model]).fetchone()
        if row is None:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(ident))
            return
        owner, encoding, collate, ctype, oid = row
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}")
                     .format(ident, sql.Identifier(owner), sql.Literal(encoding), sql.Literal(collate),
                             sql.Literal(ctype)))
        try:
            for copy in (_copy_privileges, _copy_settings, _copy_comment, _copy_security_labels):
                copy(conn, oid, ident)
        except BaseException:
            conn.execute(sql.SQL("DROP DATABASE {}").format(ident))
            raise


def copy_connection_limit(cluster: ManagedCluster, name: str, model: str) -> int:
    """Give `name` the connection limit of `model` (-1: none, PostgreSQL's default); the limit."""
    with admin_connection(cluster) as conn:
        row = conn.execute("SELECT datconnlimit FROM pg_database WHERE datname = %s", [model]).fetchone()
        limit = row[0] if row else -1
        conn.execute(sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT {}").format(sql.Identifier(name),
                                                                                sql.Literal(limit)))
    return limit


def _copy_privileges(conn: psycopg.Connection, oid: int, ident: sql.Identifier) -> None:
    grants = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,"
        " a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s", [oid]).fetchall()
    if not grants:
        return  # the default privileges, which the new database has too
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
    for grantee, privilege, grantable in grants:
        conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
            sql.SQL(privilege), ident, sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
            sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")))


def _copy_settings(conn: psycopg.Connection, oid: int, ident: sql.Identifier) -> None:
    """`ALTER DATABASE ... SET` and `ALTER ROLE ... IN DATABASE ... SET`: every pg_db_role_setting row of it."""
    rows = conn.execute("SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END, setconfig"
                        " FROM pg_db_role_setting WHERE setdatabase = %s ORDER BY setrole", [oid]).fetchall()
    for role, config in rows:
        alter = (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), ident) if role
                 else sql.SQL("ALTER DATABASE {}").format(ident))
        for entry in config or []:
            name, _, value = entry.partition("=")
            values = _split_list(value) if name in LIST_SETTINGS else [value]
            conn.execute(sql.SQL("{} SET {} TO {}").format(
                alter, sql.Identifier(name), sql.SQL(", ").join(sql.Literal(v) for v in values)))


def _copy_comment(conn: psycopg.Connection, oid: int, ident: sql.Identifier) -> None:
    comment = conn.execute("SELECT shobj_description(%s, 'pg_database')", [oid]).fetchone()[0]
    if comment is not None:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(comment)))


def _copy_security_labels(conn: psycopg.Connection, oid: int, ident: sql.Identifier) -> None:
    """A database's labels are in pg_shseclabel (databases are shared objects). Setting one needs its provider
    loaded: without it PostgreSQL refuses, and the database is not made rather than made without the label."""
    labels = conn.execute("SELECT provider, label FROM pg_shseclabel WHERE objoid = %s"
                          " AND classoid = 'pg_database'::regclass ORDER BY provider", [oid]).fetchall()
    for provider, label in labels:
        try:
            conn.execute(sql.SQL("SECURITY LABEL FOR {} ON DATABASE {} IS {}").format(
                sql.Identifier(provider), ident, sql.Literal(label)))
        except psycopg.errors.InvalidParameterValue as exc:
            raise DatabaseError(f"the database has the security label {label!r} of provider {provider}, which this "
                                f"server has not loaded ({exc}): the restored database would lose it; load the "
                                "provider (shared_preload_libraries) and restore again") from exc


def _split_list(value: str) -> list[str]:
    """A list setting's stored text (`"$user", public`) as its elements."""
    items, current, quoted, i = [], "", False, 0
    while i < len(value):
        char = value[i]
        if char == '"' and quoted and value[i + 1:i + 2] == '"':
            current, i = current + '"', i + 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += char
        i += 1
    return [*items, current.strip()]


def protected_names(cluster: ManagedCluster) -> set[str]:
    production = cluster.databases.filter(environment=ManagedDatabase.Environment.PRODUCTION)
    return {*PROTECTED, settings.DATABASES["default"]["NAME"], *production.values_list("name", flat=True)}


def drop(cluster: ManagedCluster, name: str) -> None:
    """Drop a database a recovery made (ending its sessions); never a production one."""
    if name in protected_names(cluster):
        raise DatabaseError(f"refusing to drop {name!r}: it is a production or system database")
    with admin_connection(cluster) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def allow_connections(cluster: ManagedCluster, name: str, allow: bool) -> None:
    with admin_connection(cluster) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")))


def end_sessions(conn: psycopg.Connection, names: list[str], say: Callable[[str], None]) -> None:
    """End every other session on the databases `names` and wait until they are gone."""
    deadline = time.monotonic() + SWAP_WAIT_SECONDS
    while True:
        ended = conn.execute("SELECT datname, pid, usename, application_name, pg_terminate_backend(pid)"
                             " FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                             [names]).fetchall()
        if not ended:
            return
        for datname, pid, user, application, _ in ended:
            say(f"ended session {pid} of {user or '?'} ({application or 'no application name'}) on {datname}")
        if time.monotonic() > deadline:
            raise DatabaseError(f"sessions on {', '.join(names)} did not end within {SWAP_WAIT_SECONDS} s")
        time.sleep(0.2)


def swap(cluster: ManagedCluster, production: str, restored: str, before: str, say: Callable[[str], None]) -> None:
    """Put `restored` in the place of `production`, which is kept as `before`.

    New connections to production are refused first and its sessions ended; both renames are one transaction, so
    either both happen or neither. Whatever fails, production accepts connections again.
    """
    with admin_connection(cluster) as conn:
        present = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [production]).fetchone() is not None
        if not present:
            say(f"{production} does not exist: the restored database takes its name")
        try:
            if present:
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    sql.Identifier(production)))
                say(f"{production} refuses new connections")
            end_sessions(conn, [production, restored], say)
            with conn.transaction():
                if present:
                    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(production), sql.Identifier(before)))
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(restored), sql.Identifier(production)))
        finally:
            renamed = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [before]).fetchone()
            old_name = before if renamed else production
            if present:
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(old_name)))
        say(f"renamed {production} to {before} and {restored} to {production}" if present
            else f"renamed {restored} to {production}")


def register(cluster: ManagedCluster, name: str, environment: str) -> ManagedDatabase:
    database, _ = ManagedDatabase.objects.update_or_create(cluster=cluster, name=name,
                                                           defaults={"environment": environment})
    return database


def analyze(target: pg.Target) -> None:
    with pg.connect(target, purpose="recovery-analyze", statement_timeout_ms=0) as conn:
        conn.execute("ANALYZE")
