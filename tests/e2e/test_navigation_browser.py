"""End to end for a working day's navigation: Back, Forward and reload after every form
send nothing again (no page is the answer to a POST); the skip link; the case page's field
grid and cell gallery as one tab stop each, with the arrow keys inside; a 100-field case
within 60 tab stops; focus on what is new; axe on the Swagger UI page, all of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_browser import (  # the same server, browser and checks
    SERVED,
    assert_accessible,
    base_url,  # noqa: F401 - a fixture
    browser,  # noqa: F401 - a fixture
    save_screenshot,
    sync_api,
)
from tests.support.accounts import PASSWORDS
from tests.support.cases import write_case

pytestmark = [pytest.mark.e2e, pytest.mark.data]

MAX_TAB_STOPS = 60


class PostCounter:
    """Counts the POST requests a page sends (a resubmitted form is one more)."""

    def __init__(self, page) -> None:
        self.sent: list[str] = []
        page.on("request", lambda r: self.sent.append(r.url) if r.method == "POST" else None)

    def __len__(self) -> int:
        return len(self.sent)


def assert_history_resends_nothing(page, posts: PostCounter, state: str) -> None:
    """Back, Forward and reload from the page a form led to: no POST goes out again, and
    the browser asks nothing (a resubmission prompt would be a dialog)."""
    before, here = len(posts), page.url
    page.go_back(wait_until="load")
    page.go_forward(wait_until="load")
    assert page.url == here, state
    page.reload(wait_until="load")
    assert page.url == here, state
    assert len(posts) == before, f"{state}: sent again: {posts.sent[before:]}"


def sign_in(page, role: str, password: str | None = None) -> None:
    page.fill("#username", role)
    page.fill("#password", password or PASSWORDS[role])
    page.click("#sign-in")


def new_page(browser, role, **options):  # noqa: F811 - the fixture, passed on
    page = browser.new_page(role, **options)
    dialogs: list[str] = []

    def dismissed(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismissed)
    page.dialogs = dialogs
    return page


def test_back_forward_and_reload_never_resend_a_form(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
    tmp_path: Path,
) -> None:
    page = new_page(browser, None, viewport={"width": 1100, "height": 900})
    posts = PostCounter(page)

    # Sign-in: refused, then accepted.
    page.goto(base_url + "/login")
    sign_in(page, "clinician", "not the password at all")
    sync_api.expect(page.locator("#error")).to_contain_text("Wrong username or password")
    assert_history_resends_nothing(page, posts, "refused sign-in")
    sign_in(page, "clinician")
    page.wait_for_url(base_url + "/")
    assert_history_resends_nothing(page, posts, "sign-in")

    # The quick check: a result, and a refusal.
    page.set_input_files("#image", str(smear_images["pre_b"][0]))
    page.click("#submit")
    page.wait_for_url(re.compile(r"/result/"))
    verdict = page.locator("#verdict").inner_text()
    assert_history_resends_nothing(page, posts, "quick check")
    assert page.locator("#verdict").inner_text() == verdict  # the same result, held
    sync_api.expect(page.locator("#verdict")).to_be_focused()  # focus on the new content
    page.click("#again")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photograph")
    page.set_input_files("#image", str(bad))
    page.click("#submit")
    sync_api.expect(page.locator("#error")).to_be_focused()
    assert_history_resends_nothing(page, posts, "refused quick check")

    # A case created without JavaScript's help is one form with its photographs.
    page.goto(base_url + "/cases/new")
    page.fill("#reference", "NAV-0001")
    page.set_input_files("#images", [str(p) for p in smear_images["benign"][:2]])
    page.click("#submit")
    page.wait_for_selector("#case-verdict", timeout=60_000)
    assert_history_resends_nothing(page, posts, "new case")
    assert page.dialogs == []
    page.context.close()


def test_account_and_admin_forms_never_resend(browser, base_url: str) -> None:  # noqa: F811
    page = new_page(browser, "admin", viewport={"width": 1100, "height": 900})
    posts = PostCounter(page)
    page.goto(base_url + "/admin/users")
    page.fill("#new-username", "nav.viewer")
    page.select_option("#new-role", "viewer")
    page.click("#user-form button[type=submit]")
    sync_api.expect(page.locator("#one-time")).to_contain_text("nav.viewer")
    one_time = page.locator("#secret-text").inner_text()
    sync_api.expect(page.locator("#one-time")).to_be_focused()
    assert_history_resends_nothing(page, posts, "new user")
    # Shown once: the reload shows the users without the password.
    assert page.locator("#one-time").count() == 0

    page.fill("#new-username", "nav.viewer")  # taken: refused
    page.click("#user-form button[type=submit]")
    sync_api.expect(page.locator("#error")).to_contain_text("nav.viewer")
    assert_history_resends_nothing(page, posts, "refused new user")

    page.click("text=New token for nav.viewer")
    sync_api.expect(page.locator("#one-time")).to_contain_text("API token")
    assert_history_resends_nothing(page, posts, "new token")
    page.click("#user-nav\\.viewer button[aria-label^='Revoke token']")
    sync_api.expect(page.locator(".flash")).to_contain_text("revoked")
    assert_history_resends_nothing(page, posts, "revoked token")
    page.click("text=Disable nav.viewer")
    sync_api.expect(page.locator(".flash")).to_contain_text("disabled")
    assert_history_resends_nothing(page, posts, "disabled user")
    page.click("text=Enable nav.viewer")
    page.context.close()

    # The new user's first sign-in and password change.
    user = new_page(browser, None, viewport={"width": 1100, "height": 900})
    posts = PostCounter(user)
    user.goto(base_url + "/login")
    sign_in(user, "nav.viewer", one_time)
    user.wait_for_url("**/account/password")
    user.fill("#current", one_time)
    user.fill("#new", "too short")
    user.fill("#confirm", "too short")
    user.evaluate("document.getElementById('password-form').noValidate = true")
    user.click("#change-password")
    sync_api.expect(user.locator("#error")).to_contain_text("at least")
    assert_history_resends_nothing(user, posts, "refused password")
    chosen = "a viewer's own long password"
    user.fill("#current", one_time)
    user.fill("#new", chosen)
    user.fill("#confirm", chosen)
    user.click("#change-password")
    user.wait_for_url(base_url + "/cases/")  # a viewer's home, never the upload page's 403
    sync_api.expect(user.locator(".flash")).to_contain_text("password is changed")
    assert_history_resends_nothing(user, posts, "password change")
    assert user.dialogs == []
    user.context.close()


def test_a_viewer_signing_in_from_the_site_root_lands_on_the_case_list(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    page = browser.new_page(None)
    page.goto(base_url + "/")
    page.wait_for_url(re.compile(r"/login\?next=/$"))
    sign_in(page, "viewer")
    page.wait_for_url(base_url + "/cases/")
    assert "Forbidden" not in page.content()
    assert "Error 403" not in page.content()
    page.context.close()


def test_the_skip_link_is_the_first_tab_stop_and_shown_on_focus(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    for url in ("/", "/cases/", "/api/docs"):
        page.goto(base_url + url)
        skip = page.locator(".skip-link")
        assert skip.bounding_box()["y"] + skip.bounding_box()["height"] <= 0  # out of sight
        page.keyboard.press("Tab")
        sync_api.expect(skip).to_be_focused()
        box = skip.bounding_box()
        assert box is not None
        assert box["y"] >= 0, box  # in sight now
        assert box["height"] > 10, box
        assert skip.inner_text() == "Skip to the content"
        if url == "/":
            assert_accessible(page, "skip link focused")
            save_screenshot(page, "skip-link.png")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "content"
        page.keyboard.press("Tab")
        inside = "document.querySelector('#content').contains(document.activeElement)"
        assert page.evaluate(inside), url
    page.close()


def stored_case(reference: str, fields: int, base_url: str) -> str:  # noqa: F811 - a URL
    """A case of ``fields`` answered fields, written straight to the records; its URL."""
    from app.core.classes import CLASS_IDS
    from app.web.extensions import inference

    app = SERVED[base_url]
    with app.app_context():
        card = inference().served("lenet").card
    classes = [CLASS_IDS[position % len(CLASS_IDS)] for position in range(1, fields + 1)]
    public_id = write_case(app, reference, classes, card, created_by="clinician")
    return f"{base_url}/cases/{public_id}"


# Where the focus is: the group it is in (the grid, the gallery) and its start tag.
FOCUSED = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) { return "body"; }
    const group = el.closest("#field-grid") ? "grid "
        : el.closest("#cell-gallery") ? "gallery " : "";
    return group + el.outerHTML.slice(0, 100);
}"""


def tab_stops(page, limit: int = 400) -> list[str]:
    """Every element Tab reaches, in order, from the top of the page round to the top."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUSED)
    stops = [first]
    for _ in range(limit):
        page.keyboard.press("Tab")
        here = page.evaluate(FOCUSED)
        if here in (first, "body"):
            break
        stops.append(here)
    return stops


def test_a_100_field_case_is_a_short_walk_for_the_keyboard(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    url = stored_case("NAV-100", 100, base_url)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url)
    assert page.locator("#field-grid a").count() == 100
    stops = tab_stops(page)
    assert len([s for s in stops if s.startswith("grid ")]) == 1, stops  # one for 100 fields
    outside = [s for s in stops if not s.startswith("gallery ")]
    assert len(outside) <= MAX_TAB_STOPS, f"{len(outside)} tab stops: {outside}"
    assert_accessible(page, "100-field case")
    page.close()


def test_the_field_grid_and_the_cell_gallery_move_with_the_arrow_keys(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
    smear_images,
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(base_url + "/cases/new")
    page.fill("#reference", "NAV-ROVE")
    page.set_input_files("#images", [str(p) for p in smear_images["pro_b"][:3]])
    page.click("#submit")
    page.wait_for_selector("#case-verdict", timeout=60_000)
    # The verdict can be parsed before the deferred keyboard.js has set the grid's tab stops.
    page.wait_for_load_state("domcontentloaded")

    grid = page.locator("#field-grid a")
    assert grid.count() == 3
    tabbable = page.evaluate("[...document.querySelectorAll('#field-grid a')].map(a => a.tabIndex)")
    assert tabbable == [0, -1, -1]
    grid.nth(0).focus()
    page.keyboard.press("ArrowRight")
    sync_api.expect(grid.nth(1)).to_be_focused()
    page.keyboard.press("End")
    sync_api.expect(grid.nth(2)).to_be_focused()
    page.keyboard.press("Home")
    sync_api.expect(grid.nth(0)).to_be_focused()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Tab")  # out of the grid, past its other links
    assert page.evaluate("!document.getElementById('field-grid').contains(document.activeElement)")
    page.keyboard.press("Shift+Tab")  # back in, on the field last chosen
    sync_api.expect(grid.nth(1)).to_be_focused()

    cells = page.locator("#cell-gallery a")
    assert cells.count() >= 3
    stops = page.evaluate(
        "[...document.querySelectorAll('#cell-gallery a')].filter(a => a.tabIndex >= 0).length"
    )
    assert stops == 1
    cells.nth(0).focus()
    page.keyboard.press("ArrowRight")
    sync_api.expect(cells.nth(1)).to_be_focused()
    page.keyboard.press("ArrowLeft")
    sync_api.expect(cells.nth(0)).to_be_focused()
    page.keyboard.press("ArrowDown")
    below = page.evaluate("document.activeElement.getBoundingClientRect().top")
    assert below > cells.nth(0).bounding_box()["y"]
    assert page.locator("#roving-hint").count() == 1
    assert_accessible(page, "case page, moving in the cell gallery")
    save_screenshot(page, "case-gallery-keyboard.png")
    page.close()


def test_the_swagger_ui_page_passes_axe_whole(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    page = browser.new_page(role="admin", viewport={"width": 1100, "height": 900})
    page.goto(base_url + "/api/docs/try")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert_accessible(page, "Swagger UI page")
    page.click("#operations-cases-list_cases")
    page.wait_for_selector(".opblock.is-open")
    assert_accessible(page, "Swagger UI page, an operation open")
    save_screenshot(page, "api-try-axe.png")
    page.close()


def test_the_models_page_reads_at_phone_width_with_each_models_figure_on_new_patients(
    browser,  # noqa: F811
    base_url: str,  # noqa: F811
) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(base_url + "/models")
    cards = page.locator(".model-card")
    assert cards.count() >= 2
    for i in range(cards.count()):
        figure = cards.nth(i).locator(".patient-blocks")
        sync_api.expect(figure).to_contain_text("On patients it was not trained on")
        sync_api.expect(figure).to_contain_text("Benign recall")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert_accessible(page, "models page at phone width")
    save_screenshot(page, "models-phone.png")
    page.close()
