"""A complete restore keeps what pg_dump leaves out of a database without --create: its connection limit, its comment,
each role's settings in it (`ALTER ROLE r IN DATABASE d SET ...`) and its security labels, whether the restored
database replaces production or stays beside it. They are set after the backup was taken: they come from the
database, not from the dump."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from portal.models import ManagedDatabase
from recovery import complete
from recovery.models import RecoveryRequest
from tests.recovery.conftest import database_names, query, run, submit

pytestmark = pytest.mark.django_db(transaction=True)

COMMENT = "PAWS360 production: the registrar's student records (FERPA)"


@pytest.fixture
def reporting_role(sample_database: ManagedDatabase) -> Iterator[str]:
    """A role of the cluster, with settings of its own in the sample database only; dropped afterwards."""
    role = f"paws360_reporting_{uuid.uuid4().hex[:8]}"
    admin = sample_database.cluster.target()
    query(admin, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        query(admin, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def set_properties(database: ManagedDatabase, role: str) -> None:
    name, as_role = sql.Identifier(database.name), sql.Identifier(role)
    for statement in ("ALTER DATABASE {name} WITH CONNECTION LIMIT 25", "COMMENT ON DATABASE {name} IS {comment}",
                      "ALTER ROLE {role} IN DATABASE {name} SET statement_timeout = '5s'",
                      "ALTER ROLE {role} IN DATABASE {name} SET search_path = reporting, \"$user\", public"):
        query(database, sql.SQL(statement).format(name=name, role=as_role, comment=sql.Literal(COMMENT)))


def properties(database: ManagedDatabase, name: str, role: str) -> dict[str, object]:
    """The database `name`'s connection limit, comment and `role`'s settings in it, as the catalog has them."""
    ((limit, comment, role_settings),) = query(
        database.cluster.target(),
        "SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database'), (SELECT s.setconfig FROM pg_db_role_setting s"
        " WHERE s.setdatabase = d.oid AND s.setrole = %s::regrole) FROM pg_database d WHERE d.datname = %s",
        [role, name])
    return {"connection limit": limit, "comment": comment, "role settings": sorted(role_settings or [])}


EXPECTED = {"connection limit": 25, "comment": COMMENT,
            "role settings": ['search_path=reporting, "$user", public', "statement_timeout=5s"]}


def test_replacing_production_keeps_its_connection_limit_comment_and_role_settings(
        sample_database, good_backup, reporting_role, operator, dba):
    name = sample_database.name
    set_properties(sample_database, reporting_role)
    assert properties(sample_database, name, reporting_role) == EXPECTED

    request = run(submit(sample_database, operator, dba, destination=RecoveryRequest.Destination.REPLACE))

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    before = request.verification["before_database"]
    assert before in database_names(sample_database), "production was really replaced: the old one is kept aside"
    assert properties(sample_database, name, reporting_role) == EXPECTED
    assert properties(sample_database, before, reporting_role) == EXPECTED, "the old database keeps them too"
    assert f"connection limit 25, as {name}'s" in request.steps.get(name=complete.SWAP).log


def test_beside_production_the_restored_database_has_them_too(sample_database, good_backup, reporting_role,
                                                              operator):
    set_properties(sample_database, reporting_role)

    request = run(submit(sample_database, operator, destination=RecoveryRequest.Destination.BESIDE))

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert request.result_database != sample_database.name
    assert properties(sample_database, request.result_database, reporting_role) == EXPECTED
    assert properties(sample_database, sample_database.name, reporting_role) == EXPECTED


def test_a_security_label_is_copied_or_the_restore_says_why_it_cannot_be(sample_database, good_backup, operator):
    """PostgreSQL 15 loads no label provider by default, and sepgsql needs SELinux: no label can be set here. What
    can be made for real is a database that carries a label of a provider no longer loaded (a superuser writes it
    into pg_shseclabel, where such a label stays): the restore reads it and must not drop it silently."""
    name = sample_database.name
    label = "system_u:object_r:sepgsql_db_t:s0:c7"
    query(sample_database, "INSERT INTO pg_shseclabel (objoid, classoid, provider, label) SELECT oid, "
                           "'pg_database'::regclass, 'selinux', %s FROM pg_database WHERE datname = %s", [label, name])

    request = run(submit(sample_database, operator, destination=RecoveryRequest.Destination.BESIDE))

    assert request.status == RecoveryRequest.Status.FAILED
    assert f"the security label '{label}' of provider selinux" in request.error
    assert 'security label provider "selinux" is not loaded' in request.error
    assert database_names(sample_database) == {name}, "no restored database is left without the label"
    assert query(sample_database, "SELECT label FROM pg_shseclabel s JOIN pg_database d ON d.oid = s.objoid "
                                  "WHERE d.datname = %s", [name]) == [(label,)]
