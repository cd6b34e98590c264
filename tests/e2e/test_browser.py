"""End to end: a real HTTP server and Debian's Chromium driven by Playwright.

Opens the upload page, chooses a real smear image, submits, checks the result
page, and saves screenshots to test-artifacts/e2e/, and to docs/screenshots/
(the README's) when UPDATE_SCREENSHOTS=1. Needs /usr/bin/chromium
(apt-get install chromium).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app.core.classes import CLASS_IDS

pytestmark = [pytest.mark.e2e, pytest.mark.data]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
# The README's copies change only when asked, so a test run leaves the tree clean.
SCREENSHOT_DIRS = [ARTIFACTS] + (
    [ROOT / "docs" / "screenshots"] if os.environ.get("UPDATE_SCREENSHOTS") == "1" else []
)
VERDICTS = (
    "Malignant: ",
    "Benign: hematogones",
    "Uncertain",
    "Outside what the model was trained on",
)

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright missing")


@pytest.fixture(scope="module")
def base_url(models_dir: Path, inference_service) -> Iterator[str]:
    """The real app behind a threaded Werkzeug server on a free local port."""
    from app import create_app

    app = create_app(
        {"APP_ENV": "testing", "MODELS_DIR": str(models_dir), "SECRET_KEY": "e2e-secret"},
        inference=inference_service,
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def save_screenshot(page, name: str) -> None:
    for folder in SCREENSHOT_DIRS:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / name), full_page=True)


def test_upload_and_result_pages(browser, base_url: str, smear_images) -> None:
    smear = smear_images["pre_b"][0]
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(base_url + "/")
    assert page.title().startswith("Analyse a smear image")
    options = page.locator("#model option")
    assert options.count() >= 2
    assert "test accuracy" in options.first.inner_text()
    assert page.locator("#model").input_value() == "lenet"

    page.set_input_files("#image", str(smear))
    sync_api.expect(page.locator("#preview")).to_be_visible()  # JS preview (data: URI)
    save_screenshot(page, "upload.png")

    page.click("#submit")
    page.wait_for_selector("#verdict")
    verdict = page.locator("#verdict").inner_text()
    assert verdict.startswith(VERDICTS)
    bars = page.locator("#probabilities li")
    assert bars.count() == 4
    assert [bars.nth(i).get_attribute("data-class") for i in range(4)] == list(CLASS_IDS)
    assert "not a diagnosis" in page.content()
    assert int(page.locator("#cell-count").inner_text()) >= 1
    photo, heatmap = page.locator(".view-photo"), page.locator("#gradcam")
    assert photo.evaluate("img => img.naturalWidth") > 0
    sync_api.expect(photo).to_be_visible()
    sync_api.expect(heatmap).to_be_hidden()

    page.click("#toggle-gradcam")
    sync_api.expect(heatmap).to_be_visible()
    sync_api.expect(photo).to_be_hidden()
    sync_api.expect(page.locator("#heatmap-note")).to_be_visible()
    assert heatmap.evaluate("img => img.naturalWidth") > 0
    save_screenshot(page, "result.png")
    page.click("#toggle-cells")
    sync_api.expect(page.locator("#cells")).to_be_visible()
    sync_api.expect(heatmap).to_be_hidden()
    assert not errors, f"browser errors (CSP violations show up here): {errors}"

    page.click("#again")
    page.wait_for_selector("#upload-form")
    page.close()


def test_phone_width_has_no_horizontal_scroll(browser, base_url: str, smear_images) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 740}, device_scale_factor=1)
    page.goto(base_url + "/")
    page.set_input_files("#image", str(smear_images["benign"][0]))
    page.click("#submit")
    page.wait_for_selector("#verdict")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "result-phone.png"), full_page=True)
    page.close()


def test_drag_and_drop_fills_the_file_input(browser, base_url: str, smear_images) -> None:
    page = browser.new_page()
    page.goto(base_url + "/")
    payload = list(smear_images["early_pre_b"][0].read_bytes())
    page.evaluate(
        """bytes => {
            const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        payload,
    )
    assert page.evaluate("document.getElementById('image').files[0].name") == "dropped.jpg"
    sync_api.expect(page.locator("#preview")).to_be_visible()
    page.click("#submit")
    page.wait_for_selector("#verdict")
    assert page.locator("#probabilities li").count() == 4
    page.close()


def test_works_without_javascript(browser, base_url: str, smear_images) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url + "/")
    page.set_input_files("#image", str(smear_images["pro_b"][0]))
    page.select_option("#model", index=page.locator("#model option").count() - 1)
    page.click("#submit")
    page.wait_for_selector("#verdict")
    assert page.locator("#probabilities li").count() == 4
    # The view toggle is radio inputs + CSS, so it works with JavaScript off too.
    sync_api.expect(page.locator("#gradcam")).to_be_hidden()
    page.click("#toggle-gradcam")
    sync_api.expect(page.locator("#gradcam")).to_be_visible()
    sync_api.expect(page.locator(".view-photo")).to_be_hidden()
    context.close()


def test_foreign_image_shows_the_warning(
    browser, base_url: str, inference_service, tmp_path: Path
) -> None:
    if inference_service.served("lenet").guard is None:
        pytest.skip("lenet has no fitted OOD guard in this models folder")
    from PIL import Image

    foreign = tmp_path / "solid.png"
    Image.new("RGB", (300, 300), (40, 120, 200)).save(foreign)
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(base_url + "/")
    page.set_input_files("#image", str(foreign))
    page.click("#submit")
    page.wait_for_selector("#verdict")
    sync_api.expect(page.locator("#ood-warning")).to_be_visible()
    assert page.locator("#verdict").inner_text().startswith("Outside what the model was trained")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "result-foreign.png"), full_page=True)
    page.close()
