from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from backups.models import StorageLocation
from backups.storage import locations
from portal import audit_privileges, embedded, pg
from portal.embedded import sample
from portal.models import ManagedCluster, ManagedDatabase
from portal.roles import AUDITOR, DBA, OPERATOR, sync_role_permissions
from tests.clusters import ScratchCluster

PROJECT = Path(__file__).resolve().parent.parent
# A test session is a portal instance of its own (job tags, storage markers, audit anchors), also for the workers
# it starts: never taken for the `bin/portal up` of the same checkout.
os.environ.setdefault("PORTAL_INSTANCE_ID", f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> None:
    """The test database as production has it: the audit table belongs to its owner role, and the portal's role
    may only INSERT and SELECT it (a superuser grants it, as `bin/portal up` does)."""
    with django_db_blocker.unblock():
        role = audit_privileges.app_role()
    embedded.portal_superuser_sql(audit_privileges.grant_sql(role), connection.settings_dict["NAME"])
    empty_audit_table()  # what migrating it recorded (the roles' permissions)


def empty_audit_table() -> None:
    """The audit trail emptied by the superuser (the only one who can: the table is not flushed with the others),
    so a test starts from an empty chain."""
    table = audit_privileges.TABLE
    embedded.portal_superuser_sql(f"BEGIN; ALTER TABLE {table} DISABLE TRIGGER USER; TRUNCATE {table}; "
                                  f"ALTER TABLE {table} ENABLE TRIGGER USER; COMMIT;", connection.settings_dict["NAME"])


_audit_trail = {"dirty": False}


@pytest.fixture(autouse=True)
def _audit_trail_per_test(request) -> Iterator[None]:
    """A transactional test leaves its events (and those its flush's post_migrate records) behind: the next test
    starts without them."""
    if _audit_trail["dirty"]:
        empty_audit_table()
        _audit_trail["dirty"] = False
    yield
    marker = request.node.get_closest_marker("django_db")
    if (marker is not None and marker.kwargs.get("transaction")) or any(
            name in request.fixturenames for name in ("transactional_db", "live_server")):
        _audit_trail["dirty"] = True


@pytest.fixture
def scratch_cluster() -> Iterator[ScratchCluster]:
    """A real, separate PostgreSQL cluster, started; stopped and removed afterwards."""
    cluster = ScratchCluster().create()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def embedded_scratch(db) -> ManagedCluster:
    """The embedded scratch cluster (bin/pg-embedded `scratch`, running for the whole session), registered under the
    name the test settings give SCRATCH_CLUSTER: where verification restores, drills and single-table restores run.
    One cluster for every test: its databases are named per portal and per job, and dropped by whoever made them."""
    return embedded.register_scratch()


@pytest.fixture
def backup_root(db, embedded_scratch, tmp_path: Path, settings, monkeypatch) -> Path:
    """BACKUP_ROOT for this test, here and in any worker it starts (the default `local` location's folder),
    initialised as `manage.py setup_embedded` does, with the scratch cluster registered (logical backups are
    verified there). The default location is made first, as its migration does, since a transactional test before
    this one may have flushed it away."""
    root = tmp_path / "backups"
    root.mkdir()
    settings.BACKUP_ROOT = root
    monkeypatch.setenv("BACKUP_ROOT", str(root))
    init_default_location()
    return root


def init_default_location() -> StorageLocation:
    """The default location (BACKUP_ROOT), made if missing and its folder initialised (its marker written)."""
    location = StorageLocation.default_local()
    locations.initialise(location, actor="test")
    return location


@pytest.fixture
def embedded_cluster(db) -> ManagedCluster:
    return embedded.register()


@pytest.fixture
def scratch_database() -> Iterator[pg.Target]:
    """An empty database on the embedded cluster, dropped afterwards."""
    name = f"paws360_test_{uuid.uuid4().hex[:10]}"
    admin = embedded.target()
    with pg.connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield embedded.target(name)
    finally:
        with pg.connect(admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sample_database(embedded_cluster) -> Iterator[ManagedDatabase]:
    """A small PAWS360 sample database (scale 0.02, about 10 MB) on the embedded cluster, registered as a
    managed production database; dropped afterwards, with any database named after it (the one a complete
    restore replaced, kept as <name>_before_<time>)."""
    name = f"paws360_test_{uuid.uuid4().hex[:10]}"
    sample.build(embedded.target(name), 0.02)
    database = ManagedDatabase.objects.create(cluster=embedded_cluster, name=name)
    try:
        yield database
    finally:
        drop_named_after(name)


@pytest.fixture
def larger_sample(embedded_cluster) -> Iterator[ManagedDatabase]:
    """The sample at scale 1 (about 68 MB): its restore takes a few seconds, long enough to watch or to kill.
    Dropped afterwards, with any database named after it (the one a complete restore replaced)."""
    name = f"paws360_big_{uuid.uuid4().hex[:8]}"
    sample.build(embedded.target(name), 1)
    try:
        yield ManagedDatabase.objects.create(cluster=embedded_cluster, name=name)
    finally:
        drop_named_after(name)


def drop_named_after(name: str) -> None:
    with pg.connect(embedded.target(), purpose="test-cleanup") as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                [f"{name}%"]).fetchall()]
    for leftover in names:
        sample.drop(embedded.target(leftover))


def make_user(username: str, role: str | None) -> User:
    sync_role_permissions()
    user = User.objects.create_user(username, password="correct horse battery staple", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def dba(db) -> User:
    """May do everything, including approving recoveries."""
    return make_user("dana_dba", DBA)


@pytest.fixture
def dba2(db) -> User:
    """A second DBA, to approve what the first one requested."""
    return make_user("dev_dba", DBA)


@pytest.fixture
def operator(db) -> User:
    """Runs backups and maintenance, requests recoveries; cannot approve."""
    return make_user("olga_operator", OPERATOR)


@pytest.fixture
def auditor(db) -> User:
    """Sees everything, changes nothing."""
    return make_user("audrey_auditor", AUDITOR)


def _test_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def qcluster(django_db_setup, django_db_blocker, tmp_path) -> Iterator[subprocess.Popen]:
    """A real django-q2 cluster (`manage.py qcluster`) working on the test database, for one test; its log is
    the test's `qcluster.log` (pytest keeps the last three runs' folders). The test must use `transaction=True`
    for the worker to see the rows it creates."""
    with django_db_blocker.unblock():
        url = _test_database_url()
        # The housekeeping schedules (the reaper, status samples...) do not run on their own in a test: one that fired
        # at a minute's turn would race what the test does. A test that wants a schedule to run makes it due.
        Schedule.objects.update(next_run=timezone.now() + timedelta(days=365))
    env = {**os.environ, "DATABASE_URL": url, "Q_WORKERS": "2", "CONN_MAX_AGE": "0"}
    log = open(tmp_path / "qcluster.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=PROJECT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(1)
    try:
        yield proc
    finally:
        proc.terminate()  # the sentinel stops its workers itself; a group-wide signal confuses it
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    """Poll until `predicate()` is truthy; return its value or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")
