"""End to end: a real HTTP server and Debian's Chromium driven by Playwright.

Opens the upload page, chooses a real smear image, submits, checks the result
page, and saves screenshots to test-artifacts/e2e/, and to docs/screenshots/
(the README's) when UPDATE_SCREENSHOTS=1. Needs /usr/bin/chromium
(apt-get install chromium).
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from app.core.classes import CLASS_IDS
from tests.support.accounts import PASSWORDS, app_users, form_token
from tests.support.browser import CHROMIUM

pytestmark = [pytest.mark.e2e, pytest.mark.data]

ROOT = Path(__file__).resolve().parents[2]
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

# axe-core, installed by `npm ci --prefix tests/e2e` (make test and .ci/run do it).
AXE = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"

# The app behind each module's server, by its base URL (tests that write records directly).
SERVED: dict[str, Any] = {}

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip package playwright missing")


@pytest.fixture(scope="module")
def base_url(models_dir: Path, inference_service, tmp_path_factory) -> Iterator[str]:
    """The real app behind a threaded Werkzeug server on a free local port."""
    from app import create_app

    records = tmp_path_factory.mktemp("records")
    app = create_app(
        {
            "APP_ENV": "testing",
            "MODELS_DIR": str(models_dir),
            "SECRET_KEY": "e2e-secret",
            "DATABASE_URL": f"sqlite:///{records / 'cases.sqlite3'}",
            "IMAGE_STORE": str(records / "images"),
            # Every page below signs in as a clinician; throttling is tested in tests/web.
            "LOGIN_RATE_PER_ACCOUNT": "1000 per minute",
            "LOGIN_RATE_PER_ADDRESS": "1000 per minute",
        },
        inference=inference_service,
    )
    app_users(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    SERVED[url] = app
    yield url
    SERVED.pop(url, None)
    server.shutdown()
    thread.join(timeout=5)


class SignedInBrowser:
    """Chromium whose new pages and contexts are signed in through the real login form, as
    a clinician unless told otherwise (``role=None``: not signed in)."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self.contexts: list[Any] = []  # closed with the module, the browser goes on

    def new_context(self, role: str | None = "clinician", **options: Any) -> Any:
        context = self.browser.new_context(**options)
        self.contexts.append(context)
        if role is not None:
            login = context.request.get(self.base_url + "/login")
            signed = context.request.post(
                self.base_url + "/login",
                form={
                    "username": role,
                    "password": PASSWORDS[role],
                    "csrf_token": form_token(login.text()),
                },
                max_redirects=0,
            )
            assert signed.status == 303, signed.text()[:500]
        return context

    def new_page(self, role: str | None = "clinician", **options: Any) -> Any:
        return self.new_context(role, **options).new_page()


@pytest.fixture(scope="module")
def browser(chromium: Any, base_url: str) -> Iterator[SignedInBrowser]:
    """The run's Chromium (tests/e2e/conftest.py), signing in to this module's server."""
    signed_in = SignedInBrowser(chromium, base_url)
    yield signed_in
    for context in signed_in.contexts:
        context.close()


def assert_accessible(page, state: str, exclude: str | None = None) -> None:
    """No axe-core violation (WCAG 2.1 A and AA, best practices) in the page as it is now,
    outside the ``exclude`` selector's elements."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix tests/e2e`")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated by the test harness, not injected as a tag the page's CSP would block.
        page.evaluate(AXE.read_text() + "\n;true")
    result = page.evaluate(
        """(exclude) => axe.run(exclude ? {exclude: [exclude]} : document, {runOnly: {type: "tag",
            values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})""",
        exclude,
    )
    problems = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(n["target"][0] for n in v["nodes"][:3])
        for v in result["violations"]
    ]
    assert not problems, f"{state}: " + "; ".join(problems)


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
    assert_accessible(page, "upload page")
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
    assert_accessible(page, "result, heatmap view")
    save_screenshot(page, "result.png")
    page.click("#toggle-cells")
    sync_api.expect(page.locator("#cells")).to_be_visible()
    assert_accessible(page, "result, cells view")
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
    assert_accessible(page, "result at phone width")
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


def test_foreign_image_hides_the_class_and_says_what_to_do(
    browser, base_url: str, inference_service, tmp_path: Path
) -> None:
    if inference_service.served("lenet").guard is None:
        pytest.skip("lenet has no fitted OOD guard in this models folder")
    import numpy as np
    from PIL import Image

    from app.core.classes import DISPLAY_NAMES
    from tests.support.images import ImageFactory

    # A smear-like field at the right scale, in colours no stain gives: flagged, not refused.
    smear = np.asarray(ImageFactory.smear((300, 300)))[..., [1, 0, 2]]
    foreign = tmp_path / "green.png"
    Image.fromarray(smear).save(foreign)
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(base_url + "/")
    page.set_input_files("#image", str(foreign))
    page.click("#submit")
    page.wait_for_selector("#verdict")
    sync_api.expect(page.locator("#ood-warning")).to_be_visible()
    sync_api.expect(page.locator("#ood-fixes li").first).to_be_visible()
    assert page.locator("#verdict").inner_text().startswith("Outside what the model was trained")
    # Waits through Playwright's own polling: wait_for_function would poll with eval(),
    # which the page's CSP forbids whenever the focus has not moved yet.
    sync_api.expect(page.locator("#verdict")).to_be_focused()
    # The model's output is behind a closed disclosure: no class is in the visible text.
    sync_api.expect(page.locator("#probabilities")).to_be_hidden()
    visible = page.locator("main").inner_text()
    assert not [label for label in DISPLAY_NAMES.values() if label in visible]
    assert_accessible(page, "out-of-distribution result")
    save_screenshot(page, "result-foreign.png")
    page.click("#withheld summary")
    sync_api.expect(page.locator("#probabilities")).to_be_visible()
    assert_accessible(page, "out-of-distribution result, output shown")
    page.close()


def test_phone_capture_is_refused_with_reason_and_fix(
    browser, base_url: str, tmp_path: Path
) -> None:
    from PIL import Image

    from tests.support.images import ImageFactory
    from training.capture import WARM, jpeg, vignette, white_balance

    # A phone at the eyepiece (dark corners, warm light, JPEG), zoomed 3x into the field.
    smear = ImageFactory.smear((672, 672))
    zoomed = smear.crop((224, 224, 448, 448)).resize((672, 672), Image.Resampling.BICUBIC)
    cropped = Image.open(io.BytesIO(jpeg(white_balance(WARM)(vignette(zoomed)), 70)))
    path = tmp_path / "phone.jpg"
    cropped.save(path, quality=85)
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(base_url + "/")
    page.select_option("#model", "vggnet")
    page.set_input_files("#image", str(path))
    page.click("#submit")
    page.wait_for_selector("#error")
    reason = page.locator("#error .reason").inner_text()
    assert reason.startswith("This photograph was not analysed: cells look")
    assert "larger than in the training images" in reason
    assert "use the 100x objective" in page.locator("#error-fix").inner_text()
    # The deferred script moves focus after the page is parsed: wait for it, then check.
    sync_api.expect(page.locator("#error")).to_be_focused()
    assert page.locator("#model").input_value() == "vggnet"  # the choice survives the refusal
    sync_api.expect(page.locator("#guidance")).to_be_visible()
    assert_accessible(page, "upload page with a refusal")
    save_screenshot(page, "upload-refused.png")
    page.close()


@pytest.mark.parametrize("model", ["lenet"])
def test_heat_on_the_background_is_said_plainly(
    browser, base_url: str, data_dir: Path, model: str
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    # The warning fires on about one answer in ten: the first eight Benign files hold one.
    for path in sorted((data_dir / "Benign").glob("*.jpg"))[:8]:
        page.goto(base_url + f"/?model={model}")
        page.set_input_files("#image", str(path))
        page.click("#submit")
        page.wait_for_selector("#verdict")
        if page.locator("#heat-warning").count():
            break
    else:
        pytest.fail("no Benign image whose heat is sparse on the cells")
    page.click("#toggle-gradcam")
    sync_api.expect(page.locator("#heat-warning")).to_be_visible()
    warning = page.locator("#heat-warning").inner_text()
    share = page.locator("#heat-share").inner_text()
    on_cells, area = re.findall(r"(\d+)%", share)[:2]
    assert warning.startswith(f"{on_cells}% of the heat lies on white cells that cover {area}%")
    assert "may rest on the background" in warning
    slider = page.locator("#heat-opacity")
    sync_api.expect(slider).to_be_visible()
    slider.fill("30")
    assert page.locator("#gradcam").evaluate("img => getComputedStyle(img).opacity") == "0.3"
    assert_accessible(page, "result with the heat warning")
    save_screenshot(page, "result-heat.png")
    page.close()


def test_the_accessibility_check_finds_what_it_should(browser, base_url: str) -> None:
    page = browser.new_page()
    page.goto(base_url + "/")
    page.evaluate(
        """() => {
            const faded = document.createElement("p");
            faded.textContent = "Pre-B ALL 12.5%";
            faded.style.color = "#b0b0b0";
            document.querySelector("main").appendChild(faded);
            document.querySelector("#model").removeAttribute("id");
        }"""
    )
    with pytest.raises(AssertionError) as found:
        assert_accessible(page, "a page broken on purpose")
    assert "color-contrast" in str(found.value)
    assert "select-name" in str(found.value)
    page.close()


def test_dropping_several_files_on_the_quick_check_points_to_a_case(
    browser, base_url: str, smear_images
) -> None:
    page = browser.new_page()
    page.goto(base_url + "/")
    payload = [list(p.read_bytes()) for p in smear_images["pre_b"][:2]]
    page.evaluate(
        """files => {
            const transfer = new DataTransfer();
            files.forEach((bytes, i) => transfer.items.add(
                new File([new Uint8Array(bytes)], `field-${i}.jpg`, {type: "image/jpeg"})));
            const zone = document.getElementById("dropzone");
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        payload,
    )
    # Never silently cut to the first file: nothing is chosen, and the page says why.
    assert page.evaluate("document.getElementById('image').files.length") == 0
    sync_api.expect(page.locator("#drop-note")).to_be_visible()
    assert_accessible(page, "quick check after several files were dropped")
    page.click("#drop-note a")
    page.wait_for_selector("#case-form")
    page.close()
