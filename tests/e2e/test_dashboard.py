"""Log in through the admin login page and see the managed targets with their status."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

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
