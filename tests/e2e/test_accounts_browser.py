"""End to end for accounts: sign in through the form, upload a case, sign it off as a
clinician, a viewer refused the sign-off, sign out; the admin's audit page; axe on each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_browser import (  # the same server, browser and checks
    assert_accessible,
    base_url,  # noqa: F401 - a fixture
    browser,  # noqa: F401 - a fixture
    save_screenshot,
    sync_api,
)
from tests.support.accounts import PASSWORDS

pytestmark = [pytest.mark.e2e, pytest.mark.data]


def sign_in(page, role: str) -> None:
    page.fill("#username", role)
    page.fill("#password", PASSWORDS[role])
    page.click("#sign-in")


def test_clinician_signs_off_viewer_cannot_and_both_sign_out(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
) -> None:
    page = browser.new_page(role=None, viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/cases/new")
    page.wait_for_url(re.compile(r"/login\?next="))
    assert_accessible(page, "sign-in page")
    save_screenshot(page, "login.png")

    sign_in(page, "clinician")
    page.wait_for_url("**/cases/new")  # back where the clinician was going
    assert "clinician" in page.locator(".account").inner_text()
    page.fill("#reference", "E2E-AUTH-1")
    page.set_input_files("#images", [str(p) for p in smear_images["pre_b"][:2]])
    page.click("#submit")
    page.wait_for_selector("#case-verdict", timeout=60_000)
    case_url = page.url
    # A sign-off needs the fields the verdict rests on opened first.
    for field in page.locator("#review-flagged a").evaluate_all("links => links.map(a => a.href)"):
        page.goto(field)
    page.goto(case_url)
    page.check("input[name=decision][value=override]")
    page.select_option("#class_id", "pre_b")
    page.check("#sign-off")
    page.click("#review-submit")
    sync_api.expect(page.locator("#reviews")).to_contain_text("Signed off")
    sync_api.expect(page.locator("#reviews")).to_contain_text("clinician")
    page.click("#sign-out")
    page.wait_for_url("**/login")
    sync_api.expect(page.locator(".flash")).to_contain_text("signed out")
    page.goto(case_url)
    page.wait_for_url(re.compile(r"/login\?next="))  # signed out means signed out

    viewer = browser.new_page(role=None, viewport={"width": 1100, "height": 900})
    viewer.goto(case_url)
    sign_in(viewer, "viewer")
    viewer.wait_for_url(case_url)
    assert viewer.locator("#review-form").count() == 0
    sync_api.expect(viewer.locator("#review-not-allowed")).to_be_visible()
    assert viewer.locator("#delete-link").count() == 0
    assert "New case" not in viewer.locator(".site-nav").inner_text()
    assert_accessible(viewer, "case page as a viewer")
    # Sent anyway (as a crafted form would be), the sign-off is refused.
    token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = viewer.request.post(
        case_url + "/reviews",
        form={"decision": "override", "class_id": "benign", "sign_off": "1", "csrf_token": token},
        max_redirects=0,
    )
    assert refused.status == 403
    viewer.click("#sign-out")
    viewer.wait_for_url("**/login")
    assert errors == []
    page.context.close()
    viewer.context.close()


def test_the_admin_reads_the_audit_trail(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    page = browser.new_page(role="admin", viewport={"width": 1100, "height": 900})
    page.goto(base_url + "/admin/audit")
    sync_api.expect(page.locator("#audit-events")).to_contain_text("login")
    page.select_option("#a-action", "login")
    page.click("#audit-search button[type=submit]")
    page.wait_for_url("**action=login*")
    actions = page.locator("#audit-events tbody td:nth-child(3)").all_inner_texts()
    assert actions
    assert set(actions) == {"login"}
    assert_accessible(page, "audit trail")
    save_screenshot(page, "audit.png")
    with page.expect_download() as download:
        page.click("#audit-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("id,at,actor,action")
    page.goto(base_url + "/admin/users")
    assert_accessible(page, "users")
    page.fill("#new-username", "e2e.viewer")
    page.select_option("#new-role", "viewer")
    page.click("#user-form button[type=submit]")
    sync_api.expect(page.locator("#one-time")).to_contain_text("e2e.viewer")
    assert_accessible(page, "users with a one-time password")
    save_screenshot(page, "users.png")
    page.context.close()
