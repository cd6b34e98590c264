"""JSON API (/api/v1): classify an uploaded image, list the served models."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify

from app.web.extensions import csrf, inference
from app.web.presenter import model_json, prediction_json
from app.web.uploads import read_upload, requested_model, wants_explanation

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # API clients send no session cookie, so there is no form to forge


@bp.post("/predict")
def predict() -> Any:
    """Multipart ``image`` (+ optional ``model``, ``explain``) -> the prediction as JSON."""
    service = inference()
    model = service.resolve(requested_model())
    g.model_name = model
    prediction = service.predict(read_upload("image"), model, explain=wants_explanation())
    return jsonify(prediction_json(prediction))


@bp.get("/models")
def models() -> Any:
    service = inference()
    return jsonify(
        default=service.default_model, models=[model_json(card) for card in service.models()]
    )
