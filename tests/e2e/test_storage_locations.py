"""A DBA adds a storage location in the admin: a folder inside /etc (through a symbolic link) is refused with the
reason, nothing is saved; a folder of its own is saved and gets its marker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from backups.models import StorageLocation
from backups.storage import locations
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def fill(page, name: str, path: str | Path) -> None:
    page.fill("#id_name", name)
    page.select_option("#id_kind", "local")
    page.fill("#id_path", str(path))
    page.click("input[name=_save]")


def test_a_dba_is_told_why_a_folder_is_refused_and_nothing_is_saved(page, live_server, dba, tmp_path: Path):
    (tmp_path / "looks-fine").symlink_to("/etc")
    login(page, live_server.url, dba.username, next_url="/admin/backups/storagelocation/add/")
    fill(page, "nas", tmp_path / "looks-fine" / "backups")
    error = page.locator(".field-path .errorlist")
    expect(error).to_contain_text("(resolves to /etc/backups) is inside /etc, a system folder.")
    screenshot(page, "storage-location-refused")
    assert not StorageLocation.objects.filter(name="nas").exists()

    fill(page, "nas", tmp_path / "nas")
    expect(page.locator(".messagelist")).to_contain_text(f"nas: wrote {tmp_path}/nas/{locations.MARKER}")
    row = page.locator("#result_list tbody tr", has_text="nas")
    expect(row.locator(".status.ok")).to_have_text("written")
    assert json.loads((tmp_path / "nas" / locations.MARKER).read_text())["location"] == "nas"
