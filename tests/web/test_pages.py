"""Server-rendered pages: upload form, result page, friendly HTML errors; every form
answered with a redirect (POST, redirect, GET), the quick check's result held for its
sign-in; the 403 page's links."""

from __future__ import annotations

import io
import json
import re
import shutil
from typing import Any

import pytest
from markupsafe import escape

from app import create_app
from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from tests.support.accounts import admin_client, form_token
from tests.support.uploads import post_upload


def post_analyze(client, token: str, data: bytes, filename: str = "smear.png", **form: str):
    """The quick check's POST: answered with a redirect (303), never a page."""
    response = post_upload(client, "/analyze", data, filename, csrf_token=token, **form)
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return response


def analyze(client, token: str, data: bytes, filename: str = "smear.png", **form: str):
    """The page the quick check's redirect leads to (the result, or the form again)."""
    location = post_analyze(client, token, data, filename, **form).headers["Location"]
    return client.get(location)


def test_upload_page(client, inference_service) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page
    assert 'name="csrf_token"' in page
    assert re.search(r'<input type="file" id="image" name="image" required\s+accept="image/', page)
    assert 'id="dropzone"' in page
    assert 'id="preview"' in page
    assert page.count('type="submit"') == 2  # the upload and the header's sign-out
    for info in inference_service.models():
        accuracy = f"{info.test_accuracy * 100:.1f}%"
        assert re.search(
            rf'<option value="{info.name}"[^>]*>\s*{re.escape(info.display_name)}'
            rf" — test accuracy {re.escape(accuracy)}",
            page,
        )
    assert re.search(r'<option value="lenet" selected>', page)
    assert "Maximum file size: 50 MB" in page
    assert "JPEG, PNG" in page
    assert "not a diagnosis" in page
    assert 'name="viewport"' in page


def test_pages_have_no_inline_script_or_style(client, csrf_token, images) -> None:
    pages = [
        client.get("/").get_data(as_text=True),
        analyze(client, csrf_token, images.make()).get_data(as_text=True),
        client.get("/missing").get_data(as_text=True),
        client.get("/admin/users").get_data(as_text=True),
        client.get("/admin/audit").get_data(as_text=True),
        client.get("/account/password").get_data(as_text=True),
        client.application.test_client().get("/login").get_data(as_text=True),
    ]
    for page in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline <script> breaks the CSP"
        assert " style=" not in page
        assert "<style" not in page
        assert re.search(r'<script src="/static/upload.js"', pages[0])


def test_static_files_are_served(client) -> None:
    with client.get("/static/style.css") as css, client.get("/static/upload.js") as script:
        assert b".bar-fill" in css.data
        assert b"dataTransfer" in script.data


def test_result_page(client, csrf_token, images, inference_service) -> None:
    response = analyze(client, csrf_token, images.make("JPEG", size=(300, 200)))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    verdict = re.search(r'<h1 class="verdict (\w+)" id="verdict" tabindex="-1">([^<]+)</h1>', page)
    assert verdict
    assert verdict.group(1) in (
        "malignant",
        "benign",
        "uncertain",
        "out_of_distribution",
    )
    assert verdict.group(2).startswith(
        ("Malignant: ", "Benign: hematogones", "Uncertain", "Outside what the model was trained on")
    )
    assert re.search(r'<img src="data:image/jpeg;base64,[A-Za-z0-9+/=]+" alt="The uploaded', page)
    bars = re.findall(r'<li class="bar[^"]*" data-class="(\w+)">', page)
    assert bars == list(CLASS_IDS)
    shown = re.findall(r'<span class="bar-value">(&gt;|&lt;)?([\d.]+)%</span>', page)
    assert len(shown) == 4
    exact = [float(v) for sign, v in shown if not sign]
    assert all(0.1 <= v <= 99.9 for v in exact)
    if all(not sign for sign, _ in shown):
        assert sum(exact) == pytest.approx(100, abs=0.3)
    for name in DISPLAY_NAMES.values():
        assert name in page
    lenet = inference_service.served("lenet").card
    assert f"{lenet.display_name} · version {lenet.version}" in page
    assert re.search(r"<dd>\d+ ms", page)
    assert "Research decision support, not a diagnosis." in page
    assert 'href="/?model=lenet" id="again"' in page
    assert "300×200 px, JPEG" in page


def test_result_with_other_model(client, csrf_token, images, inference_service) -> None:
    other = inference_service.models()[-1]
    page = analyze(client, csrf_token, images.make(), model=other.name).get_data(as_text=True)
    assert f"{other.display_name} · version {other.version}" in page


def test_result_says_when_the_model_averages_orientations(
    client, csrf_token, images, inference_service
) -> None:
    for info in inference_service.models():
        page = analyze(client, csrf_token, images.make(), model=info.name).get_data(as_text=True)
        used = re.search(r'<dd id="model-used">(.*?)</dd>', page, re.S)
        assert used
        assert info.display_name in used.group(1)
        whose = (
            "each cell read as the mean of its crop's"
            if info.unit == "cell"
            else ("mean of the image's")
        )
        averaged = f"{whose} {info.views} flips and quarter turns" in used.group(1)
        assert averaged == (info.views > 1)


@pytest.mark.parametrize(
    ("data", "form", "status", "message"),
    [
        (None, {}, 400, "No file was"),
        (b"just some text", {}, 415, "not a supported image"),
        (b"", {}, 422, "could not be decoded"),
        (b"png", {"model": "resnet"}, 400, "unknown model"),
    ],
)
def test_errors_send_back_to_the_upload_page_with_the_message(
    client, csrf_token, images, data, form, status, message
) -> None:
    payload = {"csrf_token": csrf_token, **form}
    if data is not None:
        payload["image"] = (io.BytesIO(images.make() if data == b"png" else data), "x.jpg")
    response = client.post("/analyze", data=payload, content_type="multipart/form-data")
    assert response.status_code == 303  # not the error's status: reload must not resend
    assert response.headers["Location"].startswith("/")
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'role="alert"' in html
    assert message in html
    assert 'id="upload-form"' in html  # the form is back, ready for another try
    # The message is shown once: a reload of the form is a clean form.
    assert message not in client.get(response.headers["Location"]).get_data(as_text=True)


def test_too_large_upload_sends_back_to_the_upload_page(client, csrf_token) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (50 * 1024 * 1024)
    page = analyze(client, csrf_token, big, filename="big.jpg").get_data(as_text=True)
    assert "too large; the limit is 50 MB" in page
    assert 'id="upload-form"' in page


def test_selected_model_is_kept_after_an_error(client, csrf_token, inference_service) -> None:
    other = inference_service.models()[-1].name
    page = analyze(client, csrf_token, b"text", model=other).get_data(as_text=True)
    assert re.search(rf'<option value="{other}" selected>', page)


def test_friendly_html_error_pages(client) -> None:
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.mimetype == "text/html"
    assert "Page not found" in missing.get_data(as_text=True)
    wrong = client.get("/analyze")
    assert wrong.status_code == 405
    assert "Back to the upload page" in wrong.get_data(as_text=True)


def assert_view_toggle(page: str) -> None:
    """Photo / heatmap / cells views switched by radio inputs (no JavaScript)."""
    radios = re.findall(r'<input class="view-radio" type="radio" name="view" id="(view-\w+)"', page)
    assert radios == ["view-photo", "view-gradcam", "view-cells"]
    assert re.search(r'id="view-photo" value="photo" checked>', page)
    for target in radios:
        assert f'<label for="{target}"' in page
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{100,}" alt="Grad-CAM', page)
    assert re.search(
        r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{100,}" alt="The smear with', page
    )
    assert 'id="heatmap-note">' in page
    assert "Heatmap (Grad-CAM): the parts of the picture" in page
    assert "not what the model recognised" in page
    assert '<input type="range" id="heat-opacity"' in page
    assert '<legend class="visually-hidden">Picture to show</legend>' in page
    assert re.search(r'<dd id="cell-count">\d+</dd>', page)


def test_foreign_image_shows_the_ood_warning(client, csrf_token, images, inference_service) -> None:
    if inference_service.served("lenet").guard is None:
        pytest.skip("lenet has no fitted OOD guard in this models folder")
    # The synthetic smear passes the scale check, but no network has seen its like.
    foreign = images.make(size=(200, 200))
    page = analyze(client, csrf_token, foreign).get_data(as_text=True)
    assert 'role="alert" id="ood-warning"' in page
    assert "This image is outside what the model was trained on." in page
    assert "Do not rely on the model's output" in page
    assert re.search(
        r'<h1 class="verdict out_of_distribution" id="verdict" tabindex="-1">Outside what the '
        r"model was trained on — do not rely on this result</h1>",
        page,
    )
    assert re.search(r'<dd id="ood-status">Failed', page)
    assert '<ul class="fixes" id="ood-fixes">' in page
    assert "What to do" in page
    assert_view_toggle(page)  # the explanation views are still there
    # The class is only behind the disclosure, never in the page's normal text.
    withheld = re.search(r'<details class="withheld" id="withheld">.*?</details>', page, re.S)
    assert withheld
    assert 'id="probabilities"' in withheld.group(0)
    outside = page.replace(withheld.group(0), "")
    for label in DISPLAY_NAMES.values():
        assert label not in outside, label
    assert "For the record only" not in page


def test_model_without_guard_says_the_check_is_unavailable(models_dir, tmp_path, images) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(models_dir / "lenet.keras", folder / "lenet.keras")
    meta = json.loads((models_dir / "lenet.json").read_text())
    meta.pop("ood", None)
    (folder / "lenet.json").write_text(json.dumps(meta))
    app = create_app(
        {
            "APP_ENV": "testing",
            "MODELS_DIR": str(folder),
            "SECRET_KEY": "t",
            "DEFAULT_MODEL": "lenet",
        }
    )
    client = admin_client(app)
    token = form_token(client.get("/").get_data(as_text=True))
    page = analyze(client, token, images.make(size=(64, 64))).get_data(as_text=True)
    assert 'id="ood-warning"' not in page
    assert re.search(r'<dd id="ood-status">Not available for this model', page)
    assert_view_toggle(page)


@pytest.mark.data
def test_real_smear_shows_the_overlay_toggle(client, csrf_token, smear_images) -> None:
    path = smear_images["pro_b"][0]
    page = analyze(client, csrf_token, path.read_bytes(), filename=path.name).get_data(as_text=True)
    assert_view_toggle(page)
    # (Whether one given smear passes the OOD check is tested on a sample in test_result_guard.)
    counted = re.search(r'<dd id="cell-count">(\d+)</dd>', page)
    assert counted is not None
    assert int(counted.group(1)) >= 1


@pytest.mark.data
def test_real_smear_through_the_form(client, csrf_token, smear_images) -> None:
    path = smear_images["pre_b"][0]
    response = analyze(client, csrf_token, path.read_bytes(), filename=path.name)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "224×224 px, JPEG" in page
    assert len(re.findall(r'class="bar-fill (?:benign|malignant)"', page)) == 4


def test_the_heat_share_is_stated_and_a_heat_elsewhere_warned(
    client, csrf_token, images, inference_service
) -> None:
    data = images.make(size=(224, 224))
    page = analyze(client, csrf_token, data).get_data(as_text=True)
    share = re.search(
        r'<p id="heat-share"><strong>(\d+)%</strong> of the heat lies on the outlined\s+'
        r"white cells, which cover (\d+)% of the picture.</p>",
        page,
    )
    assert share, "no heat share on the page"
    # The same image through the service: the page warns exactly when its rule does.
    p = inference_service.explain(inference_service.classify(data))
    assert p.model.heat_rule is not None
    assert p.min_heat_density == p.model.heat_rule.min_density  # the card's threshold
    warned = 'id="heat-warning"' in page
    assert warned == (p.heat_check != "on_cells")
    if p.heat_check == "elsewhere":
        figures = f"{share.group(1)}% of the heat lies on white cells that cover {share.group(2)}%"
        assert figures in page


def test_analyse_another_keeps_the_chosen_model(client, csrf_token, images) -> None:
    page = analyze(client, csrf_token, images.make(), model="vggnet").get_data(as_text=True)
    assert 'href="/?model=vggnet" id="again"' in page
    again = client.get("/?model=vggnet").get_data(as_text=True)
    assert re.search(r'<option value="vggnet" selected>', again)


def test_a_too_large_upload_keeps_the_model_named_in_the_url(app, client, csrf_token) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = post_upload(
        client, "/analyze?model=sequential", b"x" * 4096, "big.png", csrf_token=csrf_token
    )
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert re.search(r'<option value="sequential" selected>', page)


def test_a_refused_capture_shows_the_reason_and_the_fix(client, csrf_token, images) -> None:
    smear = images.smear((672, 672))
    zoomed = smear.crop((224, 224, 448, 448)).resize((672, 672))
    response = analyze(client, csrf_token, images.encode(zoomed))
    page = response.get_data(as_text=True)
    assert re.search(
        r'<p class="reason">This photograph was not analysed: cells look [\d.]+x larger than '
        r"in the training images.</p>",
        page,
    )
    assert (
        '<p class="fix" id="error-fix"><strong>What to do:</strong> use the 100x objective '
        "(not a higher magnification) and do not crop or zoom in.</p>" in page
    )


def test_the_upload_page_gives_capture_guidance(client) -> None:
    page = client.get("/").get_data(as_text=True)
    guidance = re.search(r'<details class="guidance" id="guidance" open>.*?</details>', page, re.S)
    assert guidance
    for topic in ("Objective", "Field", "Focus", "Stain and white balance", "File"):
        assert f"<dt>{topic}</dt>" in guidance.group(0)
    assert re.search(r'says "uncertain" on \d+% of test images', page)


def held_pages(app) -> list[Any]:
    from sqlalchemy import select

    from app.records.held import HeldPage

    with app.extensions["records"].sessions() as session:
        return list(session.scalars(select(HeldPage)))


def test_the_quick_check_redirects_to_its_result_held_for_this_sign_in(
    app, client, csrf_token, images, as_role
) -> None:
    response = post_analyze(client, csrf_token, images.make("JPEG", size=(300, 200)))
    location = response.headers["Location"]
    assert re.fullmatch(r"/result/[A-Za-z0-9_-]{20,32}", location)
    first = client.get(location)
    assert first.status_code == 200
    page = first.get_data(as_text=True)
    assert 'id="verdict"' in page
    assert "300×200 px, JPEG" in page
    assert re.search(r"<title>[^<]+ · B-ALL smear classifier</title>", page)
    assert '<script src="/static/result.js" defer>' in page
    # Reload, Back and Forward ask for the same page: the same result, nothing sent again.
    assert client.get(location).get_data(as_text=True) == page
    [kept] = held_pages(app)
    assert kept.kind == "result"
    assert set(kept.payload) == {"title", "content"}
    # Another sign-in, even of the same role, never sees it.
    other = as_role("admin").get(location)
    assert other.status_code == 303
    assert other.headers["Location"] == "/"


def test_a_held_result_expires_and_goes_at_sign_out(app, client, csrf_token, images) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.records.held import HOLD_MINUTES, HeldPage
    from app.records.schema import utcnow

    location = post_analyze(client, csrf_token, images.make()).headers["Location"]
    with app.extensions["records"].sessions() as session:
        old = utcnow() - timedelta(minutes=HOLD_MINUTES, seconds=1)
        session.execute(update(HeldPage).values(created_at=old))
        session.commit()
    gone = client.get(location)
    assert gone.status_code == 303
    assert gone.headers["Location"] == "/"
    assert "no longer kept" in client.get("/").get_data(as_text=True)

    # The next hold sweeps the expired one away; signing out removes this sign-in's.
    post_analyze(client, csrf_token, images.make())
    assert len(held_pages(app)) == 1
    page = client.get("/").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": form_token(page)}).status_code == 303
    assert held_pages(app) == []


def test_the_403_page_links_only_to_pages_the_role_may_open(as_role) -> None:
    viewer = as_role("viewer")
    for url in ("/cases/new", "/admin/users", "/admin/audit"):
        refused = viewer.get(url)
        assert refused.status_code == 403
        page = refused.get_data(as_text=True)
        main = page.split("<main", 1)[1].split("</main>", 1)[0]
        links = re.findall(r'href="(/[^"]*)"', main)
        assert links == ["/cases/"], links
        assert "upload page" not in page
        for link in re.findall(r'href="(/(?!static/)[^"#]*)"', page):
            assert viewer.get(link).status_code != 403, link
    clinician = as_role("clinician").get("/admin/users").get_data(as_text=True)
    assert 'href="/" id="error-home">Back to the upload page' in clinician


def test_a_viewer_opening_the_site_root_lands_on_the_case_list(as_role) -> None:
    response = as_role("viewer").get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/cases/"
    assert as_role("clinician").get("/").status_code == 200


def test_every_page_starts_with_a_skip_link_to_its_content(client, anonymous) -> None:
    for page in (client.get("/"), client.get("/cases/"), anonymous.get("/login")):
        html = page.get_data(as_text=True)
        body = html.split("<body>", 1)[1]
        first = re.search(r"<a [^>]*>", body)
        assert first is not None
        assert 'href="#content"' in first.group(0), first
        assert 'id="content" tabindex="-1"' in html
        assert '<script src="/static/keyboard.js" defer></script>' in html


def test_the_models_page_states_each_models_intended_use(client, as_role, inference_service):
    page = client.get("/models").get_data(as_text=True)
    for card in inference_service.models():
        assert card.intended_use is not None
        section = page.split(f'id="model-{card.name}"', 1)[1].split("</section>", 1)[0]
        assert card.display_name in section
        assert "Intended use" in section
        assert "Bone marrow aspirates" in section
        assert "other laboratories" in section
        assert card.intended_use.known_failures[0].summary in section
        assert "Taleqani Hospital, Tehran" in section
        assert "flow cytometry" in section
        assert 'href="https://doi.org/10.34740/KAGGLE/DSV/2175623"' in section
        # Beside the image-split figure, the one on patients the model never saw.
        blocks = card.patient_blocks
        assert blocks is not None
        assert f"accuracy {100 * blocks.accuracy:.1f}%" in section.split("On patients")[1]
        assert f"Benign recall {100 * blocks.benign_recall:.1f}%" in section
        assert str(escape(blocks.method)) in section
    assert 'href="/models" aria-current="page">Models</a>' in page
    assert 'href="/models"' in client.get("/").get_data(as_text=True)
    assert as_role("viewer").get("/models").status_code == 200
