"""The WAL archive's timeline page: the archive filling, the achieved RPO, base backups, a gap, the window."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from backups import pipeline, runs
from backups.models import Backup, BackupPolicy
from backups.wal import catalog, setup, status, walarchive
from portal.jobs import run_job
from tests.backups.conftest import local_location, switch_wal
from tests.conftest import wait_for
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def archiving(scratch_cluster, db):
    return setup.configure(scratch_cluster.register(), folder=scratch_cluster.root / "wal", log=lambda line: None)


def test_an_auditor_sees_the_window_the_rpo_and_a_gap_on_the_timeline(page, live_server, auditor, archiving, tmp_path):
    target = archiving.cluster.target()
    location = local_location("local-e2e", tmp_path / "backups")
    policy = BackupPolicy.objects.create(name="scratch base", kind=BackupPolicy.Kind.BASE, cluster=archiving.cluster,
                                         retention_days=7)
    policy.locations.add(location)
    backup = runs.create(policy, actor="test", via="test")
    run_job(Backup, backup.pk, pipeline.perform)
    for _ in range(3):
        status.take_sample(archiving)
        names = [switch_wal(target, rows=50) for _ in range(2)]
        wait_for(lambda names=names: all(walarchive.stored(archiving.folder, n) for n in names), message="archived")
    status.take_sample(archiving)
    os.unlink(walarchive.stored(archiving.folder, names[0]))
    catalog.scan(archiving)
    status.take_sample(archiving)

    login(page, live_server.url, auditor.username, next_url="/admin/backups/walarchive/")
    row = page.locator("#result_list tbody tr", has_text="scratch")
    expect(row).to_contain_text("critical")
    row.get_by_role("link", name="timeline").click()
    expect(page.locator("#window-verdict")).to_contain_text("You can recover scratch to any moment between")
    expect(page.locator("#window-verdict")).to_contain_text("1 gap in the archive")
    expect(page.locator("#gaps")).to_contain_text(names[0])
    expect(page.locator("#timeline .pin.backup.good")).to_have_count(1)
    expect(page.locator("#timeline .pin.gap")).to_have_count(1)
    expect(page.locator("#timeline .band.window")).to_have_count(1)
    assert page.locator("#rpo-chart polyline").get_attribute("points").count(",") >= 4
    expect(page.locator("#filling div")).not_to_have_count(0)
    expect(page.locator("#backlog")).to_have_text("0")
    screenshot(page, "wal-timeline")
