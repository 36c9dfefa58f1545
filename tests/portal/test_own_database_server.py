"""The portal never manages the server that holds its own database: a recovery of it could roll back the catalog
and the audit trail. Registering it is found out and refused, the system check says so, and no job runs on it."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from backups import runs
from backups.models import Backup, BackupPolicy
from portal import checks, jobs, targets
from portal.models import ManagedCluster


@pytest.fixture
def own_server(db) -> ManagedCluster:
    """The portal's database server, registered as if it were a managed cluster (a DBA's mistake)."""
    own = connection.settings_dict
    return ManagedCluster.objects.create(name="mistake", host=own["HOST"], port=own["PORT"], role=own["USER"],
                                         passfile=own["OPTIONS"]["passfile"])


def test_the_status_refresh_finds_it_out_and_calls_it_unreachable(own_server):
    assert targets.refresh(own_server) is False
    own_server.refresh_from_db()
    assert own_server.holds_portal_database and not own_server.reachable
    assert "the server of the portal's own database" in own_server.status_error


def test_the_system_check_refuses_it(own_server):
    targets.refresh(own_server)
    assert [error.id for error in checks.portal_database_not_managed(databases=["default"])] == ["portal.E002"]
    with pytest.raises(SystemCheckError, match="DATABASE_URL points at the server of managed cluster 'mistake'"):
        call_command("check", databases=["default"])


def test_the_managed_cluster_of_the_embedded_default_is_another_server(embedded_cluster):
    assert embedded_cluster.reachable and not embedded_cluster.holds_portal_database
    assert embedded_cluster.system_identifier
    assert checks.portal_database_not_managed(databases=["default"]) == []


def test_no_job_runs_against_it(own_server, backup_root):
    targets.refresh(own_server)
    policy = BackupPolicy.objects.create(name="mistake config", kind=BackupPolicy.Kind.CONFIG, cluster=own_server)
    backup = runs.create(policy, actor="tester", via="test")
    jobs.run_job(Backup, backup.pk, lambda job, reporter: pytest.fail("the work must not start"))
    backup.refresh_from_db()
    assert backup.status == Backup.Status.FAILED
    assert backup.error.startswith("mistake: this is the server of the portal's own database")
