"""End to end for a cell model's case: real photographs analysed by a cell model through the
new-case form, the gallery by class, a cell reclassified with the keyboard alone (the counts
follow, the focus goes on to the next cell), the audit trail, and the page at phone width;
axe checks every state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.service import InferenceService
from tests.e2e.test_browser import (  # the same server, browser and checks
    assert_accessible,
    base_url,  # noqa: F401 - a fixture
    browser,  # noqa: F401 - a fixture
    save_screenshot,
    sync_api,
)
from tests.support.cell_cases import CELL_MODEL, cell_models_folder

pytestmark = [pytest.mark.e2e, pytest.mark.data]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = cell_models_folder(tmp_path_factory.mktemp("cell-models"))
    if folder is None:
        pytest.skip("no committed models to serve beside the cell model")
    return folder


@pytest.fixture(scope="module")
def inference_service(models_dir: Path) -> InferenceService:
    """The committed LeNet (the default) and an untrained cell model."""
    return InferenceService(models_dir).load()


def _groups(page) -> dict[str, int]:
    """The gallery's classes and their cells, as the page shows them."""
    return {
        group.get_attribute("id").removeprefix("group-"): group.locator(".cell-card").count()
        for group in page.locator(".class-group").all()
    }


def _after_review(page, class_id: str) -> int:
    text = page.locator(f"#differential-{class_id} .count-reviewed").inner_text()
    return int(text.split()[0])


def test_a_cell_is_reclassified_with_the_keyboard_and_the_trail_records_it(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(base_url + "/cases/new")
    page.fill("#reference", "E2E-CELLS")
    page.select_option("#model", CELL_MODEL)
    photographs = [smear_images[c][0] for c in ("benign", "pre_b", "pro_b")]
    page.set_input_files("#images", [str(p) for p in photographs])
    page.click("#submit")
    page.wait_for_url("**/cases/*", timeout=90_000)
    page.wait_for_selector("#case-verdict")
    case_url = page.url.split("#")[0]
    assert page.locator("#differential").is_visible()
    assert_accessible(page, "case of a cell model")

    page.click("#cells-link")
    page.wait_for_selector("#cell-gallery")
    assert_accessible(page, "cell gallery")
    before = _groups(page)
    total = sum(before.values())
    assert total >= 5, before  # so one class has two cells or more
    # The first cell of a class that has another, which the focus goes on to after the change
    # (the classes of the untrained model's cells differ from run to run).
    group = next(class_id for class_id, count in before.items() if count >= 2)
    first = page.locator(f"#group-{group} .cell-card").first
    model_class = first.evaluate("card => card.className.match(/cls-(\\w+)/)[1]")
    chosen = next(c for c in CLASS_IDS if c != model_class)

    # Tab from the top of the page into the gallery: the cells are one stop, the arrow keys
    # move between them, then Tab goes to the current cell's class and its Save button.
    page.keyboard.press("Tab")
    for _ in range(60):
        if page.evaluate("document.activeElement.classList.contains('cell-link')"):
            break
        page.keyboard.press("Tab")
    shown = list(before)  # the classes in the page's order
    for _ in range(sum(before[class_id] for class_id in shown[: shown.index(group)])):
        page.keyboard.press("ArrowRight")
    sync_api.expect(first.locator(".cell-link")).to_be_focused()
    page.keyboard.press("Tab")
    sync_api.expect(first.locator("select")).to_be_focused()
    steps = CLASS_IDS.index(chosen) - CLASS_IDS.index(model_class)
    for _ in range(abs(steps)):
        page.keyboard.press("ArrowDown" if steps > 0 else "ArrowUp")
    assert first.locator("select").input_value() == chosen
    page.keyboard.press("Tab")
    sync_api.expect(first.locator("button")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    sync_api.expect(page.locator(".flash")).to_contain_text(
        f"{DISPLAY_NAMES[model_class]} → {DISPLAY_NAMES[chosen]}"
    )

    after = _groups(page)
    assert after.get(chosen, 0) == before.get(chosen, 0) + 1
    assert after.get(model_class, 0) == before.get(model_class, 0) - 1
    assert _after_review(page, chosen) == after[chosen]
    # The focus went on to the next cell of the old class, or stays in the gallery: cells.js
    # moves it on DOMContentLoaded, which a loaded machine may reach after the flash shows.
    # Polled by Playwright itself: wait_for_function's polling eval()s, which the CSP refuses.
    sync_api.expect(page.locator("#cell-gallery :focus")).to_have_count(1, timeout=10_000)
    assert_accessible(page, "cell gallery after a reclassification")
    save_screenshot(page, "cell-gallery.png")

    # A cell's number key gives it that class at once.
    card = page.evaluate("document.activeElement.closest('.cell-card').id")
    own = page.locator(f"#{card}").evaluate("card => card.className.match(/cls-(\\w+)/)[1]")
    key = next(c for c in CLASS_IDS if c != own)
    page.keyboard.press(str(CLASS_IDS.index(key) + 1))
    page.wait_for_load_state()
    sync_api.expect(page.locator(".flash")).to_contain_text(f"→ {DISPLAY_NAMES[key]}")
    assert page.locator(f"#{card}").evaluate(f"card => card.classList.contains('cls-{key}')")

    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert_accessible(page, "cell gallery at phone width")
    save_screenshot(page, "cell-gallery-phone.png")

    page.goto(case_url)
    model_count = page.locator(f"#differential-{chosen} .count-model").inner_text()
    assert int(model_count.split()[0]) == before.get(chosen, 0)  # the model's stays
    assert page.locator("#differential tr.changed").count() >= 1
    save_screenshot(page, "cell-case.png")
    assert not errors, f"browser errors: {errors}"
    page.close()

    admin = browser.new_page(role="admin", viewport={"width": 1100, "height": 900})
    admin.goto(base_url + "/admin/audit?action=cell_reclassified")
    assert admin.locator("#audit-events tbody tr").count() == 2
    text = admin.locator("#audit-events").inner_text()
    assert re.search(rf"from: {model_class}.*to: {chosen}", text, re.S), text
    assert "E2E-CELLS" in text
    assert "clinician" in text
    assert_accessible(admin, "audit trail of reclassifications")
    admin.close()


def test_a_cell_models_result_outlines_each_cell_in_its_class_colour_with_a_legend(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(base_url + "/")
    page.select_option("#model", CELL_MODEL)
    page.set_input_files("#image", str(smear_images["early_pre_b"][0]))
    page.click("#submit")
    page.wait_for_selector("#verdict")
    legend = page.locator("#cell-legend li")
    classes = [legend.nth(i).get_attribute("data-class") for i in range(legend.count())]
    assert classes[:4] == list(CLASS_IDS)
    counted = sum(
        int(legend.nth(i).locator("strong").inner_text())
        for i, c in enumerate(classes)
        if c != "uncertain"
    )
    assert counted == int(page.locator("#cell-count").inner_text().split()[0]) > 0
    # Each swatch is painted in its class's outline colour.
    swatch = page.locator("#cell-legend li[data-class=pre_b] .swatch")
    assert swatch.evaluate("s => getComputedStyle(s).backgroundColor") == "rgb(213, 94, 0)"
    page.click("#toggle-cells")
    sync_api.expect(page.locator("#cells")).to_be_visible()
    assert_accessible(page, "cell model's result, cells view")
    save_screenshot(page, "cell-result.png")
    page.close()
