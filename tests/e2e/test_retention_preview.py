"""A DBA previews a policy's retention from its admin page (keep/expire, and why), then expires what it showed."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from backups.models import Backup, BackupPolicy, StorageLocation
from backups.storage import offsite
from tests.backups.conftest import catalog, init_default_location, local_location
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
V = Backup.Verification


@pytest.fixture
def policy(sample_database, settings, tmp_path: Path) -> BackupPolicy:
    settings.BACKUP_ROOT = tmp_path / "backup-root"
    init_default_location()
    second = local_location("second-disk", tmp_path / "second-disk")
    policy = BackupPolicy.objects.create(
        name=f"paws360-nightly-{uuid.uuid4().hex[:4]}", kind=BackupPolicy.Kind.LOGICAL,
        cluster=sample_database.cluster, database=sample_database, schedule="0 2 * * *", retention_days=30,
        min_verified=2,
    )
    policy.locations.set([StorageLocation.default_local(), second])
    return policy


def test_a_dba_previews_retention_and_expires_what_it_showed(page, live_server, dba, policy):
    first = catalog(policy, days_ago=1)
    backups = {
        "today": first,
        "week": catalog(policy, days_ago=7, verification=V.PENDING, source=first),
        "old-verified-1": catalog(policy, days_ago=38, source=first),
        "old-verified-2": catalog(policy, days_ago=45, source=first),
        "old-unverified": catalog(policy, days_ago=40, verification=V.FAILED, source=first),
        "old-failed": catalog(policy, days_ago=36, status=Backup.Status.FAILED, verification=V.PENDING),
    }
    for backup in backups.values():
        if backup.status == Backup.Status.SUCCEEDED:
            offsite.copy_to_locations(backup)

    login(page, live_server.url, dba.username, next_url=f"/admin/backups/backuppolicy/{policy.pk}/change/")
    page.click("text=Retention preview")
    table = page.locator("#retention-plan")
    expect(table).to_be_visible()

    def row(name: str):
        return table.locator(f"tr[data-backup='{backups[name].pk}']")

    expect(row("today").locator(".decision")).to_have_text("keep")
    expect(row("week").locator(".reason")).to_contain_text("within the 30-day retention")
    expect(row("old-verified-1").locator(".reason")).to_contain_text("verified backup 2 of the 2")
    expect(row("old-verified-2").locator(".decision")).to_have_text("expire")
    expect(row("old-unverified").locator(".reason")).to_contain_text("does not count toward the minimum")
    expect(row("old-failed").locator(".reason")).to_contain_text("history")
    expect(row("old-verified-2")).to_contain_text("second-disk: present")
    expect(page.locator(".totals")).to_contain_text("expire 3")
    shot = screenshot(page, "retention-preview")
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS / "retention-preview.png")

    page.click("#expire-form input[type=submit]")
    expect(page.locator(".messagelist .success")).to_contain_text("Expired 3 backup(s)")
    expect(page.locator("#retention-plan tr.expire")).to_have_count(0)
    for name in ("old-verified-2", "old-unverified"):
        assert not backups[name].local_path.exists()
    assert backups["old-verified-1"].local_path.exists()
    screenshot(page, "retention-after-expiry")
