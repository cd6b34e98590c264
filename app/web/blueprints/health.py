"""Health probes: /healthz (the process is up) and /readyz (the models are loaded)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from app.web.auth import public
from app.web.errors import error_json
from app.web.extensions import inference

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz() -> Any:
    """The process is up (liveness); says nothing about the models."""
    return jsonify(status="ok")


@bp.get("/readyz")
@public
def readyz() -> Any:
    """Ready once every model is loaded and warmed up."""
    service = inference()
    if not service.ready:
        return error_json(503, "not_ready", "the models are still loading")
    return jsonify(status="ready", models=[card.name for card in service.models()])
