"""In headless Chromium, with the real worker and the stand-in API: an operator requests a complete restore that
replaces production, a DBA approves it, and the step list and progress bar follow it to the end, where the RTO and
the verification are shown."""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from backups.models import BackupPolicy
from recovery import services
from recovery.models import RecoveryRequest
from tests.backups.conftest import run_now
from tests.e2e.conftest import login, screenshot
from tests.recovery.conftest import api, query  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shown(page: Page) -> tuple[int, int, bool] | None:
    """(bar width in %, steps succeeded, finished) as the page shows them now; None while it reloads."""
    try:
        style = page.locator("#recovery-live .bar").get_attribute("style", timeout=2000) or ""
        done = page.locator("#recovery-live tr.step-succeeded").count()
        finished = page.locator("#recovery-live .job-progress").get_attribute("data-finished", timeout=2000)
    except PlaywrightError:
        return None
    width = int(style.removeprefix("width: ").rstrip("%;") or 0)
    return width, done, finished == "true" and page.locator(".field-rto .status").count() > 0


def watch_until(page: Page, wanted, what: str, timeout: float = 180) -> tuple[int, int, bool]:
    """What the page shows, polled without reloading it, once `wanted` holds of it."""
    seen: list[tuple[int, int, bool]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = shown(page)
        if now is not None and (not seen or seen[-1] != now):
            seen.append(now)
        if now is not None and wanted(*now):
            return now
        page.wait_for_timeout(150)
    pytest.fail(f"the page never showed {what}; it showed {seen}")


def test_an_operator_requests_a_complete_restore_a_dba_approves_and_watches_it(
        page: Page, browser: Browser, live_server, larger_sample, backup_root, api, operator, dba,  # noqa: F811
        qcluster):
    paws360 = larger_sample
    policy = BackupPolicy.objects.create(name="paws360 nightly", kind="logical", cluster=paws360.cluster,
                                         database=paws360)
    backup = run_now(policy)
    assert backup.verification == "verified"
    backed_up = query(paws360, "SELECT count(*), sum(gpa) FROM paws360.students")
    query(paws360, "UPDATE paws360.students SET gpa = 0.00 WHERE id <= 500")  # the incident

    login(page, live_server.url, operator.username, next_url="/admin/recovery/recoveryrequest/add/")
    expect(page.locator("#id_backup")).to_have_value(str(backup.pk))
    page.select_option("#id_database", label=str(paws360))
    page.check("#id_destination input[value=replace]")
    page.fill("#id_reason", "INC-4711: a bad grade import zeroed 500 GPAs; restore last night's backup")
    expect(page.locator("fieldset.kind-table")).to_be_hidden()
    screenshot(page, "recovery-request-form")
    page.click("input[name=_request]")
    expect(page.locator(".messagelist")).to_contain_text("waits for a second DBA")
    expect(page.locator(".field-status_badge")).to_contain_text("Awaiting approval")
    expect(page.locator(".approve-button")).to_have_count(0)
    recovery = RecoveryRequest.objects.get()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        approve_and_watch(context.new_page(), live_server, paws360, recovery, dba, api, backed_up)
    finally:
        context.close()

    page.goto(f"{live_server.url}/admin/recovery/recoveryrequest/")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("Succeeded")
    screenshot(page, "recovery-list")


def approve_and_watch(approver: Page, live_server, paws360, recovery, dba, api, backed_up) -> None:  # noqa: F811
    approver.set_default_timeout(15_000)
    login(approver, live_server.url, dba.username, next_url=f"/admin/recovery/recoveryrequest/{recovery.pk}/change/")
    approver.fill("#approval-comment", "Checked with the registrar's office")
    screenshot(approver, "recovery-awaiting-approval")
    gate = Path(api.start[-1])
    gate.touch()  # the recovery waits at its services' restart while the test watches the page
    approver.click(".approve-button")
    expect(approver.locator(".messagelist")).to_contain_text("Approved")
    held = watch_until(approver, lambda width, done, finished: 0 < width < 100 and done > 0 and not finished,
                       "the recovery part done (the bar along, some steps succeeded) while it is held")
    gate.unlink()
    final = watch_until(approver, lambda width, done, finished: finished and done > held[1],
                        "the recovery finished, every step succeeded")

    recovery.refresh_from_db()
    assert recovery.status == RecoveryRequest.Status.SUCCEEDED, recovery.error
    assert held[0] < final[0] == 100 and held[1] < final[1], (held, final)
    steps = list(recovery.steps.order_by("position"))
    assert all(step.started and step.finished for step in steps)
    assert all(a.finished <= b.started for a, b in itertools.pairwise(steps)), "one step after another"
    expect(approver.locator("#recovery-live tr.step-succeeded")).to_have_count(recovery.steps.count())
    expect(approver.locator(".field-status_badge")).to_contain_text("Succeeded")
    expect(approver.locator(".field-rto")).to_contain_text("within the RTO objective of 4 h 0 min")
    expect(approver.locator(".field-verification_display")).to_contain_text("The runbook's row-count query")
    expect(approver.locator(".field-verification_display table.row-counts")).to_contain_text("match")
    expect(approver.locator(".field-verification_display")).to_contain_text(recovery.verification["before_database"])
    assert query(paws360, "SELECT count(*), sum(gpa) FROM paws360.students") == backed_up
    assert services.healthy(api.health_url)

    shot = screenshot(approver, "recovery-complete")
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS / "recovery-complete.png")
