"""Who may touch the audit table: its owner role, never the role the portal connects as.

The web server and the worker connect as one role; the audit table, its trigger function and the schema it is in
belong to another (`AUDIT_OWNER_ROLE`), which gives the portal's role INSERT and SELECT only. So UPDATE, DELETE,
TRUNCATE, DISABLE TRIGGER and DROP are refused by privileges, and UPDATE, DELETE and TRUNCATE also by triggers.
A schema's owner may drop any table in it, hence the schema too. `grant_sql()` is what a superuser runs;
`problems()` says what is still open to the portal's own role.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from psycopg import sql

TABLE = "portal_auditevent"
TRIGGER_FUNCTION = "portal_auditevent_append_only()"


def app_role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def grant_sql(app: str, owner: str | None = None) -> str:
    """SQL for a superuser, in the portal's database: the audit table to `owner`, INSERT and SELECT to `app`.
    Idempotent."""
    owner = owner or settings.AUDIT_OWNER_ROLE
    statements = [
        sql.SQL("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {owner_text}) THEN "
                "CREATE ROLE {owner} NOLOGIN; END IF; END $$"),
        sql.SQL("ALTER SCHEMA public OWNER TO {owner}"),
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {app}"),
        sql.SQL("ALTER TABLE public.{table} OWNER TO {owner}"),
        sql.SQL("ALTER FUNCTION public.{function} OWNER TO {owner}"),
        sql.SQL("REVOKE ALL ON public.{table} FROM PUBLIC, {app}"),
        sql.SQL("GRANT SELECT, INSERT ON public.{table} TO {app}"),
        sql.SQL("GRANT USAGE, SELECT ON SEQUENCE public.{sequence} TO {app}"),
    ]
    names = {
        "owner": sql.Identifier(owner), "owner_text": sql.Literal(owner), "app": sql.Identifier(app),
        "table": sql.Identifier(TABLE), "sequence": sql.Identifier(f"{TABLE}_id_seq"),
        "function": sql.SQL(TRIGGER_FUNCTION),
    }
    return "".join(statement.format(**names).as_string() + ";\n" for statement in statements)


CHECKS = """
SELECT pg_get_userbyid(c.relowner) = current_user,
       pg_get_userbyid(n.nspowner) = current_user,
       has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'),
       has_table_privilege(c.oid, 'TRUNCATE'), has_table_privilege(c.oid, 'TRIGGER'),
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = 'public.portal_auditevent'::regclass
"""

WHAT = ("owns the audit table", "owns its schema (and may drop the table)", "may UPDATE it", "may DELETE from it",
        "may TRUNCATE it", "may create or disable its triggers")


def problems() -> list[str]:
    """What the role the portal connects as may still do to the audit table; empty when it is protected."""
    with connection.cursor() as cursor:
        cursor.execute(CHECKS)
        *privileges, triggers = cursor.fetchone()
    role = app_role()
    found = [f"the portal's role {role!r} {what}" for what, held in zip(WHAT, privileges, strict=True) if held]
    if triggers < 2:
        found.append(f"the audit table has {triggers} enabled trigger(s) of 2 (UPDATE/DELETE and TRUNCATE)")
    return found
