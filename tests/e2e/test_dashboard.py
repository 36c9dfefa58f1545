"""Log in through the admin login page and see the managed targets with their status."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from backups.models import Backup, BackupPolicy
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_dba_logs_in_and_sees_the_targets_with_their_status(page, live_server, dba, embedded_cluster):
    login(page, live_server.url, dba.username)
    expect(page).to_have_url(f"{live_server.url}/")
    row = page.locator("tr.cluster[data-cluster=embedded]")
    expect(row).to_contain_text("127.0.0.1")
    expect(row.locator(".status")).to_have_text("reachable")
    expect(row).to_contain_text("15.")
    expect(page.locator("tr.database[data-database=paws360]")).to_be_visible()
    screenshot(page, "dashboard")


def test_the_admin_lists_clusters_with_live_status(page, live_server, auditor, embedded_cluster):
    login(page, live_server.url, auditor.username, next_url="/admin/portal/managedcluster/")
    row = page.locator("#result_list tbody tr", has_text="embedded")
    expect(row.locator(".status")).to_have_text("reachable")
    screenshot(page, "clusters-admin")


def test_the_dashboard_shows_the_runbooks_checks_with_a_failing_backup_policy(page, live_server, operator,
                                                                              sample_database):
    policy = BackupPolicy.objects.create(name="paws360 nightly", kind="logical", cluster=sample_database.cluster,
                                         database=sample_database)
    Backup.objects.create(policy=policy, kind=policy.kind, cluster=policy.cluster, database=sample_database,
                          status=Backup.Status.FAILED, error="pg_dump: could not write: No space left on device")
    login(page, live_server.url, operator.username)
    failing = page.locator("#checks tr.check[data-area=Backups][data-name='paws360 nightly']")
    expect(failing.locator(".status")).to_have_text("failing")
    expect(failing).to_contain_text("No space left on device")
    expect(page.locator("#checks tr.check[data-area='Task queue'] .status")).to_have_text("failing")  # no worker
    screenshot(page, "dashboard-monitoring")
