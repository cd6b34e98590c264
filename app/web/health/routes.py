"""Health probes: /healthz (the process is up) and /readyz (the models are loaded and the
photographs can be stored)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from app.web.auth import public
from app.web.errors import error_json
from app.web.extensions import model_warmup
from app.web.records import image_store
from app.web.warmup import LOAD_FAILED

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz() -> Any:
    """The process is up (liveness); says nothing about the models."""
    return jsonify(status="ok")


@bp.get("/readyz")
@public
def readyz() -> Any:
    """Ready once every model is loaded and warmed up, while the image store can be written."""
    models = model_warmup()
    models.start()  # a server asked whether it is ready means to serve: warm up if not begun
    state = models.state
    if state == "failed":
        return error_json(503, "models_failed", LOAD_FAILED)
    if state != "ready":
        return error_json(503, "models_warming", "the models are loading and warming up")
    store = image_store()
    problem = store.problem() if store is not None else None
    if problem is not None:
        return error_json(503, "image_store_unavailable", problem)
    return jsonify(status="ready", models=[card.name for card in models.load().models()])
