"""JSON API: predict, models, health probes, JSON errors, headers."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from flask import g
from PIL import Image

from app.core.classes import CLASS_IDS
from app.web.auth import requires
from tests.support.accounts import admin_client
from tests.support.uploads import post_upload


def post_image(client, data: bytes, filename: str = "smear.png", **form: str):
    return post_upload(client, "/api/v1/predict", data, filename, **form)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_predict_returns_full_result(client, images, inference_service) -> None:
    response = post_image(client, images.make("JPEG"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["class"] in CLASS_IDS
    assert body["label"]
    assert isinstance(body["malignant"], bool)
    assert list(body["probabilities"]) == list(CLASS_IDS)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert body["class"] == max(body["probabilities"], key=body["probabilities"].get)
    lenet = inference_service.served("lenet").card
    assert body["model"]["name"] == "lenet"
    assert body["model"]["version"] == lenet.version
    assert body["elapsed_ms"] > 0


def test_plain_result_carries_the_guard_but_no_explanation(
    client, images, inference_service
) -> None:
    response = post_image(client, images.make("JPEG", size=(300, 200)))
    body = response.get_json()
    assert "explanation" not in body
    assert "iVBORw0KGgo" not in response.get_data(as_text=True)  # no base64 PNG anywhere
    assert "cells" not in body
    assert isinstance(body["uncertain"], bool)
    assert body["status"] in ("out_of_distribution", "uncertain", "malignant", "benign")
    guarded = inference_service.served("lenet").guard is not None
    assert body["ood"]["available"] is guarded
    assert (body["out_of_distribution"] is None) is not guarded
    assert {"decode", "preprocess", "model", "total"} <= set(body["timings_ms"])
    assert not {"segmentation", "gradcam", "outline"} & set(body["timings_ms"])


def decode_png(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    image.load()
    assert image.format == "PNG"
    return image


# The pictures show the square field the model saw (the centre square), at most 512 px.
@pytest.mark.parametrize(("size", "shown"), [((300, 200), (200, 200)), ((1024, 640), (512, 512))])
def test_explain_returns_pngs_of_the_right_size(client, images, size, shown) -> None:
    for how in ("query", "form"):
        if how == "query":
            response = post_upload(client, "/api/v1/predict?explain=1", images.make(size=size))
        else:
            response = post_image(client, images.make(size=size), explain="1")
        assert response.status_code == 200
        body = response.get_json()
        explanation = body["explanation"]
        assert explanation["gradcam_class"] == body["class"]
        gradcam = decode_png(explanation["gradcam_png"])
        cells = decode_png(explanation["cells_png"])
        assert gradcam.size == cells.size == shown
        assert gradcam.mode == "RGB"
        # The overlay is the photo with heat blended in, not a copy of the outline picture.
        assert not np.array_equal(np.asarray(gradcam), np.asarray(cells))
        assert body["timings_ms"]["gradcam"] > 0
        assert body["timings_ms"]["outline"] > 0


def test_explain_zero_means_no(client, images) -> None:
    response = post_upload(client, "/api/v1/predict?explain=0", images.make())
    assert "explanation" not in response.get_json()


def test_solid_colour_upload_is_refused_with_the_fix(client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (224, 224), (255, 255, 255)).save(buffer, format="PNG")
    response = post_image(client, buffer.getvalue())
    assert_error(response, 422, "scale_unmeasurable")
    message = response.get_json()["error"]["message"]
    assert "could not be measured (almost no cells were found to measure)" in message
    assert "photograph a thin area of the smear" in message


def test_synthetic_smear_is_flagged_out_of_distribution(client, images, inference_service) -> None:
    if inference_service.served("lenet").guard is None:
        pytest.skip("lenet has no fitted OOD guard in this models folder")
    body = post_image(client, images.make(size=(224, 224))).get_json()
    assert body["out_of_distribution"] is True
    assert body["status"] == "out_of_distribution"
    assert body["verdict"].startswith("Outside what the model was trained on")
    assert body["ood"]["reasons"]


def test_every_served_model_can_be_chosen(client, images, inference_service) -> None:
    for info in inference_service.models():
        response = post_image(client, images.make(), model=info.name)
        assert response.status_code == 200
        assert response.get_json()["model"]["name"] == info.name


def test_predict_sets_model_name_for_metrics(app, images) -> None:
    seen = []

    @app.after_request
    def record(response):
        seen.append(g.get("model_name"))
        return response

    post_image(admin_client(app), images.make(), model="lenet")
    assert seen == ["lenet"]


def test_models_lists_metadata_without_history(client, inference_service) -> None:
    body = client.get("/api/v1/models").get_json()
    assert body["default"] == "lenet"
    names = [m["name"] for m in body["models"]]
    assert names == [m.name for m in inference_service.models()]
    for model in body["models"]:
        assert "history" not in model
        assert 0.0 <= model["test_metrics"]["accuracy"] <= 1.0
        assert model["version"]
        assert model["display_name"]
        assert model["input_size"] > 0
        assert model["views"] == inference_service.served(model["name"]).card.views
        assert model["views"] in (1, 8)


def test_health_probes(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "ready"


def test_unknown_url_and_wrong_method_are_json(client) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/api/v1/predict"), 405, "method_not_allowed")
    assert_error(client.post("/healthz"), 405, "method_not_allowed")


def test_missing_field_and_empty_filename(client, images) -> None:
    assert_error(client.post("/api/v1/predict", data={}), 400, "missing_file")
    other_field = post_upload(client, "/api/v1/predict", images.make(), field="other")
    assert_error(other_field, 400, "missing_file")
    assert_error(post_image(client, images.make(), filename=""), 400, "missing_file")


def test_api_needs_no_csrf_token_but_web_form_does(client, images) -> None:
    assert post_image(client, images.make()).status_code == 200
    response = post_upload(client, "/analyze", images.make())
    assert response.status_code == 303
    assert "form expired" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_security_headers_everywhere(client) -> None:
    for url in ("/", "/api/v1/models", "/healthz", "/nope"):
        headers = client.get(url).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "img-src 'self' data:" in csp
        assert "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "camera=()" in headers["Permissions-Policy"]


@pytest.mark.data
def test_real_smear_per_class(client, smear_images) -> None:
    for paths in smear_images.values():
        response = post_image(client, paths[0].read_bytes(), filename=paths[0].name, explain="1")
        assert response.status_code == 200
        body = response.get_json()
        assert body["image"] == {"format": "JPEG", "width": 224, "height": 224}
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert body["segmentation"]["count"] >= 1  # every smear of the data set shows a leukocyte


def test_unexpected_errors_hide_the_stack_trace(app) -> None:
    @requires("read")
    def boom():
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/api/v1/boom", "api_boom", boom)
    app.add_url_rule("/boom", "boom", boom)
    client = admin_client(app)
    assert_error(client.get("/api/v1/boom"), 500, "internal_error")
    page = client.get("/boom")
    assert page.status_code == 500
    assert page.mimetype == "text/html"
    for response in (client.get("/api/v1/boom"), page):
        text = response.get_data(as_text=True)
        assert "secret internal detail" not in text
        assert "Traceback" not in text


def test_the_answer_carries_the_scale_check(client, images) -> None:
    body = post_image(client, images.make(size=(448, 448))).get_json()
    scale = body["scale"]
    assert scale["in_training_range"] is True
    assert scale["resampled_by"] == 1.0
    # The synthetic smear's cells are drawn at the training scale at any image size.
    assert 0.8 < scale["ratio_to_training"] < 1.35
    assert scale["cell_size_px"] == pytest.approx(2 * scale["field_cell_size_px"], rel=0.01)
    assert 0 < scale["uncertainty"] < 0.2


def test_a_zoomed_in_capture_is_refused_with_reason_and_fix(client, images) -> None:
    # The centre third of a smear blown up: cells three times the training size.
    smear = images.smear((672, 672))
    zoomed = smear.crop((224, 224, 448, 448)).resize((672, 672), Image.Resampling.BICUBIC)
    response = post_image(client, images.encode(zoomed))
    assert_error(response, 422, "cells_too_large")
    error = response.get_json()["error"]
    assert error["reason"].startswith("cells look ")
    assert "larger than in the training" in error["reason"]
    assert (
        error["fix"]
        == "use the 100x objective (not a higher magnification) and do not crop or zoom in"
    )
    assert error["message"] == f"C{error['reason'][1:]}: {error['fix']}."


def test_models_state_their_intended_use_and_limits(client, inference_service) -> None:
    for model in client.get("/api/v1/models").get_json()["models"]:
        card = inference_service.served(model["name"]).card
        assert card.intended_use is not None
        use = model["intended_use"]
        assert use["purpose"] == card.intended_use.purpose
        assert any("Bone marrow" in item for item in use["out_of_scope"])
        failure = use["known_failures"][0]
        assert (failure["true_class"], failure["called"]) == ("benign", "early_pre_b")
        assert failure["count"] == card.test_metrics.confusion_matrix[0][1]
        assert use["data"]["patients"] == 89
        assert "Taleqani" in use["data"]["source"]
