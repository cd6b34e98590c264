"""JSON API (/api/v1) and the health probes (/healthz, /readyz)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from app.errors import error_json
from app.inference import InferenceService
from app.security import read_upload

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health_bp = Blueprint("health", __name__)


def _service() -> InferenceService:
    return current_app.extensions["inference"]


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def wants_explanation() -> bool:
    """``?explain=1`` or form field ``explain=1`` asks for the Grad-CAM and outline PNGs."""
    raw = request.form.get("explain") or request.args.get("explain") or ""
    return raw.strip().lower() in TRUE_WORDS


@bp.post("/predict")
def predict() -> Any:
    """Multipart ``image`` (+ optional ``model``, ``explain``) -> the prediction as JSON."""
    service = _service()
    model = service.resolve(request.form.get("model") or request.args.get("model"))
    g.model_name = model
    prediction = service.predict(read_upload("image"), model, explain=wants_explanation())
    return jsonify(prediction.to_dict())


@bp.get("/models")
def models() -> Any:
    service = _service()
    return jsonify(
        default=service.default_model,
        models=[info.public_dict() for info in service.models()],
    )


@health_bp.get("/healthz")
def healthz() -> Any:
    """The process is up (liveness); says nothing about the models."""
    return jsonify(status="ok")


@health_bp.get("/readyz")
def readyz() -> Any:
    """Ready once every model is loaded and warmed up."""
    service = _service()
    if not service.ready:
        return error_json(503, "not_ready", "the models are still loading")
    return jsonify(status="ready", models=[m.name for m in service.models()])
