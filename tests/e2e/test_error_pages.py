"""The error pages in the browser: a DBA whose role was taken away while the page was open clicks "Expire" and is
told why, on a page in the admin's style; a missing page says what was not found."""

from __future__ import annotations

import re
import shutil

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from backups.models import Backup, BackupPolicy
from portal.models import AuditEvent, ManagedCluster, ManagedDatabase
from portal.roles import AUDITOR
from tests.backups.conftest import catalog
from tests.e2e.conftest import login, screenshot
from tests.e2e.test_recovery import DOCS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def policy(db, settings, tmp_path) -> BackupPolicy:
    settings.BACKUP_ROOT = tmp_path / "backups"
    cluster = ManagedCluster.objects.create(name="registrar", port=5432)
    database = ManagedDatabase.objects.create(cluster=cluster, name="paws360")
    return BackupPolicy.objects.create(name="paws360 nightly", kind="logical", cluster=cluster, database=database,
                                       retention_days=30)


def test_an_auditor_trying_a_dba_action_sees_the_reason(page, live_server, dba, policy):
    old = catalog(policy, days_ago=40, status=Backup.Status.FAILED, verification=Backup.Verification.PENDING)
    login(page, live_server.url, dba.username, next_url=f"/backups/policies/{policy.pk}/retention/")
    expect(page.locator("#expire-form")).to_be_visible()

    dba.groups.set([Group.objects.get(name=AUDITOR)])  # a DBA no longer, the page still open
    page.click("#expire-form input[type=submit]")

    expect(page.locator("#error-reason")).to_have_text("Only a DBA may expire backups.")
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator("#content-main")).to_contain_text("in the groups: Auditor")
    expect(page.locator("#header #site-name")).to_have_text("PAWS360 DB Ops Portal")
    expect(page.locator("#request-id")).to_have_text(re.compile(r"^[0-9a-f]{16}$"))
    shot = screenshot(page, "forbidden")
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS / "forbidden.png")
    old.refresh_from_db()
    assert old.expired_at is None
    assert AuditEvent.objects.get(action="retention.apply").outcome == "denied"


def test_a_missing_page_says_what_was_not_found(page, live_server, dba, policy):
    login(page, live_server.url, dba.username, next_url="/backups/policies/999999/retention/")
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("#error-reason")).to_have_text("No BackupPolicy matches the given query.")
    page.goto(f"{live_server.url}/no/such/page/")
    expect(page.locator("#error-reason")).to_have_text("There is no page at /no/such/page/.")
    screenshot(page, "not-found")
