"""Server-rendered pages: the upload form and the result page."""

from __future__ import annotations

import base64
import io
from typing import Any

from flask import Blueprint, current_app, g, render_template, request
from PIL import Image
from werkzeug.exceptions import RequestEntityTooLarge

from app.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.inference import FORMAT_NAMES, InferenceService, Prediction
from app.security import read_upload

bp = Blueprint("web", __name__)

THUMBNAIL_SIDE = 480


def _service() -> InferenceService:
    return current_app.extensions["inference"]


def upload_limit_mb() -> str:
    return f"{current_app.config['MAX_CONTENT_LENGTH'] / 1024 / 1024:g}"


def render_upload(error: str | None = None, status: int = 200) -> tuple[str, int]:
    """The upload page, optionally with an error message (used by the error handlers)."""
    service = _service()
    models = service.models() if service.ready else []
    selected = _posted_model()
    if selected not in {m.name for m in models}:
        selected = service.default_model
    page = render_template(
        "upload.html", models=models, selected=selected, error=error,
        max_mb=upload_limit_mb(), formats=FORMAT_NAMES,
    )
    return page, status


def _posted_model() -> str | None:
    """The model chosen in the posted form, if the form could be read at all."""
    if request.method != "POST":
        return None
    try:
        return request.form.get("model")
    except RequestEntityTooLarge:  # the body was refused unread; keep the default
        return None


@bp.get("/")
def index() -> tuple[str, int]:
    return render_upload()


@bp.post("/analyze")
def analyze() -> tuple[str, int]:
    """Classify the uploaded image and render the result directly; nothing is stored."""
    service = _service()
    model = service.resolve(request.form.get("model"))
    g.model_name = model
    data = read_upload("image")
    # The page always shows the explanation views (Grad-CAM, cell outlines).
    prediction = service.predict(data, model, explain=True)
    explanation = prediction.extras["explanation"]
    page = render_template(
        "result.html", p=prediction, bars=probability_bars(prediction),
        thumbnail=thumbnail_data_uri(prediction.image),
        gradcam=png_data_uri(explanation["gradcam_png"]),
        cells=png_data_uri(explanation["cells_png"]),
        gradcam_label=DISPLAY_NAMES[explanation["gradcam_class"]],
    )
    return page, 200


def probability_bars(prediction: Prediction) -> list[dict[str, Any]]:
    """One bar per class, in the fixed class order, the predicted one marked."""
    return [
        {
            "class_id": c,
            "label": DISPLAY_NAMES[c],
            "malignant": MALIGNANT[c],
            "percent": round(prediction.probabilities[c] * 100, 1),
            "top": c == prediction.class_id,
        }
        for c in CLASS_IDS
    ]


def thumbnail_data_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG data: URI of a downscaled copy, so the page shows the upload without storing it."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
