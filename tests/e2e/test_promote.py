"""In headless Chromium, with the real worker: an operator presses "Make this cluster production" on a succeeded
point-in-time recovery's page, a second DBA reads what approving does and approves, and the step list follows the
swap of data directories to the end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from recovery import approvals, services
from recovery.models import RecoveryRequest
from tests.conftest import wait_for
from tests.e2e.conftest import login, screenshot
from tests.e2e.test_recovery import DOCS, watch_until
from tests.recovery.conftest import api  # noqa: F401 (fixture)
from tests.recovery.pitr_fixtures import (  # noqa: F401
    archiving,
    base_policy,
    labels,
    marked_target,
    pitr_request,
    recovery_root,
)
from tests.recovery.test_promote import worker_env  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_operator_asks_to_make_a_recovered_cluster_production_and_a_dba_approves_it(
        page: Page, browser: Browser, live_server, archiving, marked_target, recovery_root, api,  # noqa: F811
        worker_env, operator, dba, qcluster):  # noqa: F811
    pitr = approvals.submit(pitr_request(archiving, marked_target), dba)  # the worker runs it
    wait_for(lambda: RecoveryRequest.objects.filter(pk=pitr.pk, status="succeeded").exists(), timeout=120,
             message="the point-in-time recovery")

    login(page, live_server.url, operator.username, next_url=f"/admin/recovery/recoveryrequest/{pitr.pk}/change/")
    page.fill("#promote-reason", "INC-2211: grades overwritten at 14:31; the recovered cluster is checked")
    screenshot(page, "promote-button")
    page.click(".promote-button")
    expect(page.locator(".messagelist")).to_contain_text("waits for a second DBA")
    expect(page.locator(".approve-button")).to_have_count(0)
    promotion = RecoveryRequest.objects.get(kind=RecoveryRequest.Kind.PROMOTE)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        approver = context.new_page()
        approver.set_default_timeout(15_000)
        login(approver, live_server.url, dba.username,
              next_url=f"/admin/recovery/recoveryrequest/{promotion.pk}/change/")
        expect(approver.locator(".field-source_link")).to_contain_text(f"{pitr}: cluster {pitr.destination_name}")
        consequence = approver.locator(".approval-consequence")
        expect(consequence).to_contain_text(f"{archiving.cluster.data_directory}.before_<UTC time>")
        expect(consequence).to_contain_text(f"The application services ({api.name}) are stopped first")
        approver.fill("#approval-comment", "Row counts checked on the recovered cluster")
        shot = screenshot(approver, "promote-awaiting-approval")
        approver.click(".approve-button")
        expect(approver.locator(".messagelist")).to_contain_text("Approved")
        watch_until(approver, lambda width, done, finished: finished and done > 0, "the promotion finished")
        promotion.refresh_from_db()
        assert promotion.status == RecoveryRequest.Status.SUCCEEDED, promotion.error
        expect(approver.locator("#recovery-live tr.step-succeeded")).to_have_count(promotion.steps.count())
        screenshot(approver, "promote-done")
    finally:
        context.close()
    assert labels(archiving.cluster.target()) == {"before"} and services.healthy(api.health_url)
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS / "promote-approval.png")
    assert Path(DOCS / "promote-approval.png").exists()
