"""Server-rendered pages: upload form, result page, friendly HTML errors."""

from __future__ import annotations

import io
import re

import pytest

from app.classes import CLASS_IDS, DISPLAY_NAMES


def analyze(client, token: str, data: bytes, filename: str = "smear.png", **form: str):
    payload = {"csrf_token": token, "image": (io.BytesIO(data), filename), **form}
    return client.post("/analyze", data=payload, content_type="multipart/form-data")


def test_upload_page(client, inference_service) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'name="csrf_token"' in page
    assert re.search(r'<input type="file" id="image" name="image" required\s+accept="image/', page)
    assert 'id="dropzone"' in page and 'id="preview"' in page
    assert page.count('type="submit"') == 1
    for info in inference_service.models():
        accuracy = f"{info.test_accuracy * 100:.1f}%"
        assert re.search(rf'<option value="{info.name}"[^>]*>\s*{re.escape(info.display_name)}'
                         rf" — test accuracy {re.escape(accuracy)}", page)
    assert re.search(r'<option value="lenet" selected>', page)
    assert "Maximum file size: 10 MB" in page and "JPEG, PNG" in page
    assert "not a diagnosis" in page
    assert 'name="viewport"' in page


def test_pages_have_no_inline_script_or_style(client, csrf_token, images) -> None:
    pages = [client.get("/").get_data(as_text=True),
             analyze(client, csrf_token, images.make()).get_data(as_text=True),
             client.get("/missing").get_data(as_text=True)]
    for page in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline <script> breaks the CSP"
        assert " style=" not in page and "<style" not in page
        assert re.search(r'<script src="/static/upload.js"', pages[0])


def test_static_files_are_served(client) -> None:
    assert b".bar-fill" in client.get("/static/style.css").data
    assert b"dataTransfer" in client.get("/static/upload.js").data


def test_result_page(client, csrf_token, images, inference_service) -> None:
    response = analyze(client, csrf_token, images.make("JPEG", size=(300, 200)))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    verdict = re.search(r'<h1 class="verdict (\w+)" id="verdict">([^<]+)</h1>', page)
    assert verdict and verdict.group(2).startswith(("Malignant: ", "Benign: hematogones"))
    assert re.search(r'<img src="data:image/jpeg;base64,[A-Za-z0-9+/=]+" alt="The uploaded', page)
    bars = re.findall(r'<li class="bar[^"]*" data-class="(\w+)">', page)
    assert bars == list(CLASS_IDS)
    percents = [float(v) for v in re.findall(r'<span class="bar-value">([\d.]+)%</span>', page)]
    assert len(percents) == 4 and sum(percents) == pytest.approx(100, abs=0.3)
    for name in DISPLAY_NAMES.values():
        assert name in page
    lenet = inference_service.model_info("lenet")
    assert f"{lenet.display_name} · version {lenet.version}" in page
    assert re.search(r"<dd>\d+ ms", page)
    assert "Research decision support, not a diagnosis." in page
    assert 'href="/" id="again"' in page
    assert "300×200 px, JPEG" in page


def test_result_with_other_model(client, csrf_token, images, inference_service) -> None:
    other = inference_service.models()[-1]
    page = analyze(client, csrf_token, images.make(), model=other.name).get_data(as_text=True)
    assert f"{other.display_name} · version {other.version}" in page


@pytest.mark.parametrize(("data", "form", "status", "message"), [
    (None, {}, 400, "No file was"),
    (b"just some text", {}, 415, "not a supported image"),
    (b"", {}, 422, "could not be decoded"),
    (b"png", {"model": "resnet"}, 400, "unknown model"),
])
def test_errors_rerender_the_upload_page(client, csrf_token, images, data, form, status,
                                         message) -> None:
    payload = {"csrf_token": csrf_token, **form}
    if data is not None:
        payload["image"] = (io.BytesIO(images.make() if data == b"png" else data), "x.jpg")
    response = client.post("/analyze", data=payload, content_type="multipart/form-data")
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and message in page
    assert 'id="upload-form"' in page  # the form is back, ready for another try


def test_too_large_upload_rerenders_the_upload_page(client, csrf_token) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024)
    response = analyze(client, csrf_token, big, filename="big.jpg")
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "too large; the limit is 10 MB" in page and 'id="upload-form"' in page


def test_selected_model_is_kept_after_an_error(client, csrf_token, inference_service) -> None:
    other = inference_service.models()[-1].name
    page = analyze(client, csrf_token, b"text", model=other).get_data(as_text=True)
    assert re.search(rf'<option value="{other}" selected>', page)


def test_friendly_html_error_pages(client) -> None:
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "Page not found" in missing.get_data(as_text=True)
    wrong = client.get("/analyze")
    assert wrong.status_code == 405 and "Back to the upload page" in wrong.get_data(as_text=True)


@pytest.mark.data
def test_real_smear_through_the_form(client, csrf_token, smear_images) -> None:
    path = smear_images["pre_b"][0]
    response = analyze(client, csrf_token, path.read_bytes(), filename=path.name)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "224×224 px, JPEG" in page
    assert len(re.findall(r'class="bar-fill (?:benign|malignant)"', page)) == 4
