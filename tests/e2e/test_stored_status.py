"""The dashboard and the admin's cluster list show each cluster's stored status sample with its age, and a stale one
as stale; loading them connects to no cluster and refreshes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from portal.models import ManagedCluster
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def samples(db) -> dict[str, ManagedCluster]:
    """Clusters on port 1, where nothing listens: a page that connected would find them all unreachable."""
    now = timezone.now()
    return {
        "fresh": ManagedCluster.objects.create(name="fresh", port=1, reachable=True, server_version="15.8",
                                               checked_at=now - timedelta(seconds=40)),
        "stale": ManagedCluster.objects.create(name="stale", port=1, reachable=True, server_version="15.8",
                                               checked_at=now - timedelta(hours=3)),
        "down": ManagedCluster.objects.create(name="down", port=1, reachable=False, checked_at=now,
                                              status_error="connection refused"),
        "new": ManagedCluster.objects.create(name="new", port=1),
    }


def expect_badges(rows) -> None:
    expect(rows("fresh").locator(".status")).to_have_text("reachable")
    expect(rows("stale").locator(".status")).to_have_text("stale")
    expect(rows("stale").locator(".status-age")).to_contain_text("3\u00a0hours")
    expect(rows("stale").locator(".status")).to_have_attribute("title", re.compile(
        r"^last sampled 3 h \d+ min ago: the status is stale \(is the task cluster running\?\)$"))
    expect(rows("down").locator(".status")).to_have_text("unreachable")
    expect(rows("down").locator(".status")).to_have_attribute("title", "connection refused")
    expect(rows("new").locator(".status")).to_have_text("not checked")


def test_the_dashboard_shows_the_stored_samples_with_their_age(page, live_server, operator, samples):
    login(page, live_server.url, operator.username)
    expect_badges(lambda name: page.locator(f"tr.cluster[data-cluster={name}]"))
    expect(page.locator("#content-main")).to_contain_text("a sample older than 5 min is stale")
    screenshot(page, "dashboard-stored-status")
    for cluster in samples.values():
        before = cluster.checked_at
        cluster.refresh_from_db()
        assert cluster.checked_at == before  # nothing sampled on the way


def test_the_admins_cluster_list_shows_the_same(page, live_server, auditor, samples):
    login(page, live_server.url, auditor.username, next_url="/admin/portal/managedcluster/")
    expect_badges(lambda name: page.locator("#result_list tbody tr", has_text=name).first)
    screenshot(page, "clusters-admin-stored-status")
    stale = ManagedCluster.objects.get(name="stale")
    assert stale.checked_at == samples["stale"].checked_at and stale.reachable is True
