"""From the admin, in headless Chromium, with the real worker: create a policy, run it now, watch the progress
bar move, and see the backup verified with its size, checksum and row counts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from backups.models import Backup, BackupPolicy
from portal import embedded
from portal.embedded import sample
from portal.models import ManagedDatabase
from tests.backups.conftest import config_versions, init_default_location
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SCALE = 2  # about 135 MB: at gzip level 9, pg_dump writes for several seconds


@pytest.fixture
def backup_root(embedded_scratch, tmp_path: Path, settings, monkeypatch) -> Path:
    root = tmp_path / "backups"
    root.mkdir()
    settings.BACKUP_ROOT = root
    monkeypatch.setenv("BACKUP_ROOT", str(root))  # the worker started by `qcluster` reads it
    init_default_location()
    return root


@pytest.fixture
def paws360(embedded_cluster) -> Iterator[ManagedDatabase]:
    name = f"paws360_e2e_{uuid.uuid4().hex[:8]}"
    sample.build(embedded.target(name), SCALE)
    try:
        yield ManagedDatabase.objects.create(cluster=embedded_cluster, name=name)
    finally:
        sample.drop(embedded.target(name))


def watch_progress(page: Page, timeout: float = 180) -> list[tuple[str, str]]:
    """The bar's (width, label) as the page shows them, until the backup is finished and the page reloaded."""
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        box = page.locator(".backup-progress").first
        try:
            state = (box.locator(".bar").get_attribute("style", timeout=2000) or "",
                     box.locator(".progress-label").inner_text(timeout=2000))
            finished = box.get_attribute("data-finished", timeout=2000) == "true"
        except PlaywrightError:  # the page is reloading
            continue
        if not seen or seen[-1] != state:
            seen.append(state)
        if finished and page.locator(".field-verification_badge .status").count():
            return seen
        page.wait_for_timeout(200)
    pytest.fail(f"the backup did not finish; the bar showed {seen}")


def test_a_dba_creates_a_policy_runs_it_and_sees_it_verified(page, live_server, dba, paws360, backup_root,
                                                             qcluster):
    login(page, live_server.url, dba.username, next_url="/admin/backups/backuppolicy/add/")
    page.fill("#id_name", "paws360 nightly full")
    page.select_option("#id_kind", "logical")
    page.select_option("#id_cluster", label="embedded")
    page.select_option("#id_database", label=str(paws360))
    page.select_option("#id_dump_format", "custom")  # one stream through the portal: the bar moves byte by byte
    page.fill("#id_compression", "9")  # slow enough (a few seconds) to watch
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".field-next_run")).to_contain_text("02:00")
    screenshot(page, "backup-policy")

    page.click("button.run-now-button")
    expect(page.locator(".messagelist")).to_contain_text("queued")
    seen = watch_progress(page)

    widths = {int(width.removeprefix("width: ").rstrip("%;")) for width, _ in seen}
    assert len({w for w in widths if 0 < w < 99}) >= 2, f"the bar did not move while pg_dump wrote: {seen}"
    assert seen[-1][0].startswith("width: 100%") and seen[-1][1].startswith("Succeeded")

    backup = Backup.objects.get(policy__name="paws360 nightly full")
    assert (backup.status, backup.verification) == ("succeeded", "verified")
    expect(page.locator(".field-verification_badge")).to_contain_text("Verified")
    expect(page.locator(".form-row.field-sha256")).to_contain_text(backup.sha256)
    expect(page.locator(".field-size_exact")).to_contain_text(f"{backup.size_bytes:,} bytes")
    counts = page.locator("table.row-counts")
    for table, rows in sample.row_counts(SCALE).items():
        expect(counts.locator("tr", has_text=table)).to_contain_text(f"{rows:,}")
    screenshot(page, "backup-verified")

    page.goto(f"{live_server.url}/admin/backups/backup/")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("Verified")
    screenshot(page, "backups-list")
    assert BackupPolicy.objects.get().backups.count() == 1


def test_an_auditor_compares_two_versions_of_a_config_file(page, live_server, auditor, embedded_cluster,
                                                           backup_root, tmp_path, settings):
    config_versions(embedded_cluster, tmp_path / "paws360-api.yml", settings,
                    "database:\n  host: db1.paws360.edu\n  pool: 10\nsession_timeout: 30m\nlog_level: info\n",
                    "database:\n  host: db2.paws360.edu\n  pool: 25\nsession_timeout: 30m\nlog_level: info\n")

    login(page, live_server.url, auditor.username, next_url="/admin/backups/configfileversion/?changed__exact=1")
    page.locator("#result_list tbody tr", has_text="paws360-api.yml").first.locator("th a, td a").first.click()
    page.locator(".field-other_versions a").first.click()
    expect(page.locator("table.diff")).to_contain_text("db2.paws360.edu")
    expect(page.locator("table.diff .diff_chg").first).to_be_visible()
    screenshot(page, "config-diff")
