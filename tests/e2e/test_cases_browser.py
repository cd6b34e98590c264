"""End to end for cases: the new-case form with its progress bar, the case page, review,
sign-off (which waits for the flagged fields to be opened), Back and Forward, and the same
without JavaScript; axe checks every state."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.classes import CLASS_IDS, MALIGNANT
from app.core.model_card import CaseRuleSpec
from app.web.analysis.presenter import class_verdict
from tests.e2e.test_browser import (  # the same server, browser and checks
    assert_accessible,
    base_url,  # noqa: F401 - a fixture
    browser,  # noqa: F401 - a fixture
    save_screenshot,
    sync_api,
)

pytestmark = [pytest.mark.e2e, pytest.mark.data]


def test_a_case_from_many_photographs_with_progress_review_and_sign_off(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
    tmp_path,
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(base_url + "/cases/new")
    assert "Not the patient's name" in page.locator("#reference-hint").inner_text()
    assert_accessible(page, "new case form")

    bad = tmp_path / "notes.txt"
    bad.write_text("not a photograph")
    files = [str(p) for p in smear_images["pro_b"]] + [str(bad)]
    page.fill("#reference", "E2E-0001")
    page.set_input_files("#images", files)
    sync_api.expect(page.locator("#chosen")).to_have_text("4 photographs chosen")
    page.click("#submit")
    sync_api.expect(page.locator("#progress-block")).to_be_visible()
    page.wait_for_url("**/cases/*", timeout=60_000)
    page.wait_for_selector("#case-verdict")
    case_url = page.url
    assert page.locator(".field-card").count() == 4
    assert "notes.txt" in page.locator("#field-grid").inner_text()
    assert_accessible(page, "case page")
    # The gallery's crops (lazy images) load as pictures once scrolled to.
    crops = page.locator("#cell-gallery img")
    assert crops.count() > 0
    for i in range(crops.count()):
        crops.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        "[...document.querySelectorAll('#cell-gallery img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    save_screenshot(page, "case.png")

    # Back to the form and Forward to the case: no resubmission, the same case.
    page.go_back()
    page.wait_for_selector("#case-form")
    page.go_forward()
    page.wait_for_selector("#case-verdict")
    assert page.url == case_url

    page.click(".field-card a >> nth=0")
    page.wait_for_selector("#full-view")
    sync_api.expect(page.locator("#full-field")).to_be_visible()
    before = page.locator("#zoom-stage").bounding_box()["width"]
    page.locator("#zoom").fill("300")
    after = page.locator("#zoom-stage").bounding_box()["width"]
    assert after > 2.5 * before
    assert_accessible(page, "field view with the full-resolution viewer")
    save_screenshot(page, "case-field.png")
    page.click("#back-to-case")
    page.wait_for_selector("#case-verdict")

    page.click("a[href*='show=refused']")
    assert page.locator(".field-card").count() == 1

    page.check("input[value=override]")
    page.select_option("#class_id", "pro_b")
    page.fill("#comment", "blasts confirmed")
    # Not every flagged field was opened: the microscope stands in for them.
    page.check("#microscope")
    page.fill("#microscope_confirmation", "blasts at x100 oil, fine chromatin")
    page.check("#sign-off")
    page.click("#review-submit")
    page.wait_for_selector("#signed-note")
    reviews = page.locator("#reviews").inner_text()
    assert class_verdict("pro_b") in reviews
    assert "Reviewed at the microscope" in reviews
    assert page.locator("#add-form").count() == 0
    assert_accessible(page, "signed-off case")

    page.reload()
    page.wait_for_selector("#signed-note")  # a reload resends nothing
    assert page.locator("#reviews li").count() == 1

    with page.expect_download() as download:
        page.click("#pdf-link")
    saved = tmp_path / "report.pdf"
    download.value.save_as(saved)
    assert saved.read_bytes()[:4] == b"%PDF"
    assert download.value.suggested_filename == "case-E2E-0001.pdf"

    page.emulate_media(media="print")
    assert page.locator("#review-form").is_hidden()
    assert page.locator("#case-verdict").is_visible()
    page.emulate_media(media="screen")

    page.click("#print-link")
    page.wait_for_selector("#report-reference")
    assert_accessible(page, "printable report")
    pdf = page.pdf(format="A4")
    assert pdf[:4] == b"%PDF"
    assert not errors, f"browser errors: {errors}"
    page.close()


def test_a_case_without_javascript_posts_then_redirects(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url + "/cases/new")
    page.fill("#reference", "E2E-0002")
    page.set_input_files("#images", [str(p) for p in smear_images["benign"][:2]])
    page.click("#submit")
    page.wait_for_selector("#case-verdict")
    assert "/cases/" in page.url
    assert page.locator(".field-card").count() == 2
    context.close()


def test_the_case_pages_fit_a_phone(browser, base_url: str, smear_images) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(base_url + "/cases/new")
    page.fill("#reference", "E2E-0003")
    page.set_input_files("#images", [str(p) for p in smear_images["pre_b"][:2]])
    page.click("#submit")
    page.wait_for_selector("#case-verdict", timeout=60_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert_accessible(page, "case page at phone width")
    page.goto(base_url + "/cases/")
    assert_accessible(page, "case list")
    page.goto(base_url + "/api/docs")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert_accessible(page, "API documentation")
    page.close()


def test_the_api_can_be_tried_in_the_local_swagger_ui(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    page = browser.new_page(role="admin", viewport={"width": 1100, "height": 900})
    page.goto(base_url + "/admin/users")
    page.click("text=New token for admin")
    token = page.locator("#secret-text").inner_text()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on(
        "request",
        lambda r: None if r.url.startswith((base_url, "data:")) else outside.append(r.url),
    )
    page.goto(base_url + "/api/docs")
    page.click("text=try the API")
    page.wait_for_selector(".opblock", timeout=30_000)
    document = page.evaluate("fetch('/api/docs/openapi.json').then(r => r.json())")
    operations = sum(
        1 for item in document["paths"].values() for m in item if m in ("get", "post", "delete")
    )
    assert page.locator(".opblock").count() == operations
    page.click(".authorize")
    page.fill(".modal-ux input[type=text]", token)
    page.click(".modal-ux .auth-btn-wrapper .authorize")
    page.click(".modal-ux .btn-done")
    page.click("#operations-cases-list_cases")
    page.click(".opblock.is-open .try-out__btn")
    page.click(".opblock.is-open .execute")
    sync_api.expect(
        page.locator(".opblock.is-open .live-responses-table .response .response-col_status")
    ).to_contain_text("200")
    save_screenshot(page, "api-try.png")
    # Swagger UI's own markup fails axe (docs/decisions.md); the page around it must not.
    assert_accessible(page, "Swagger UI page", exclude="#swagger-ui")
    assert errors == [], errors  # a script or style the content security policy blocked shows here
    assert outside == [], outside
    page.close()


def _screened(inference_service, folder: Path, malignant: bool, n: int) -> list[Path]:
    """The first ``n`` photographs in ``folder`` the served model answers benign, or
    malignant confidently enough to escalate a case."""
    card = inference_service.served(inference_service.default_model).card
    escalate_at = (card.case_rule or CaseRuleSpec()).escalate_at
    chosen = []
    for path in sorted(folder.glob("*.jpg"))[:15]:
        p = inference_service.classify(path.read_bytes())
        if p.uncertain or p.out_of_distribution:
            continue
        blasts = sum(float(p.probabilities[c]) for c in CLASS_IDS if MALIGNANT[c])
        if MALIGNANT[p.class_id] == malignant and (not malignant or blasts >= escalate_at):
            chosen.append(path)
        if len(chosen) == n:
            return chosen
    pytest.skip(f"fewer than {n} suitable photographs among the first in {folder}")


def test_a_mixed_case_is_escalated_and_signed_off_only_after_its_flagged_field_is_opened(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    data_dir: Path,
    inference_service,
) -> None:
    benign = _screened(inference_service, data_dir / "Benign", malignant=False, n=3)
    blasts = _screened(inference_service, data_dir / "Pre", malignant=True, n=1)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/cases/new")
    page.fill("#reference", "E2E-MIXED")
    page.set_input_files("#images", [str(p) for p in [*benign, *blasts]])
    page.click("#submit")
    page.wait_for_url("**/cases/*", timeout=60_000)
    page.wait_for_selector("#case-verdict")
    case_url = page.url.split("#")[0]
    # Three benign fields do not outvote the one with blasts.
    assert "status-malignant" in (page.locator("#case-verdict").get_attribute("class") or "")
    sync_api.expect(page.locator("#flagged-4")).to_contain_text("still to open")
    assert page.locator("#review-flagged li").count() == 1
    assert_accessible(page, "escalated case with a field to open")

    page.check("input[value=agree]")
    page.fill("#comment", "blasts in field 4")
    page.check("#sign-off")
    page.click("#review-submit")
    page.wait_for_selector("#review-error")
    assert "Open field 4 before signing off" in page.locator("#review-error").inner_text()
    # The refusal came as a redirect: the form is filled again, a reload resends nothing.
    assert page.url.split("#")[0] == case_url
    assert page.locator("#comment").input_value() == "blasts in field 4"
    assert page.locator("#sign-off").is_checked()
    assert_accessible(page, "refused sign-off")
    page.reload()
    assert page.locator("#review-error").count() == 0
    assert page.locator("#reviews").count() == 0

    page.click("#flagged-4 a")
    page.wait_for_selector("#back-to-case")
    page.click("#back-to-case")
    page.wait_for_selector("#case-verdict")
    sync_api.expect(page.locator("#flagged-4")).to_contain_text("opened")
    page.check("input[value=agree]")
    page.check("#sign-off")
    page.click("#review-submit")
    page.wait_for_selector("#signed-note")
    assert "Agreed" in page.locator("#reviews").inner_text()
    assert page.locator("#reviews li").count() == 1
    assert_accessible(page, "signed-off escalated case")
    assert not errors, f"browser errors: {errors}"
    page.close()
