"""JSON API (/api/v1): classify an uploaded image, list the served models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, g, jsonify, request
from werkzeug.datastructures import FileStorage

from app.core.errors import AnalysisRefusedError
from app.records.cases import MAX_FIELDS, TooManyFieldsError
from app.web.analysis.presenter import model_json, prediction_json
from app.web.auth import requires
from app.web.docs.openapi import openapi_document
from app.web.extensions import csrf, inference
from app.web.uploads import decoding_groups, read_upload, requested_model, wants_explanation

if TYPE_CHECKING:
    from app.core.service import InferenceService  # its module loads TensorFlow

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # API clients send no session cookie, so there is no form to forge


@bp.post("/predict")
@requires("analyse")
def predict() -> Any:
    """Multipart ``image`` (+ optional ``model``, ``explain``) -> the prediction as JSON.

    Several ``image`` parts are classified together and answered with a list, in their
    order; an image that cannot be classified has its ``error`` in its place.
    """
    service = inference()
    model = service.resolve(requested_model())
    g.model_name = model
    uploads = [f for f in request.files.getlist("image") if f.filename]
    if len(uploads) > 1:
        if len(uploads) > MAX_FIELDS:
            raise TooManyFieldsError(f"At most {MAX_FIELDS} images in one request.")
        explain = wants_explanation()
        answers = []
        for group in decoding_groups(uploads):
            answers.extend(_answers(service, group, model, explain))
        return jsonify(answers)
    prediction = service.predict(read_upload("image"), model, explain=wants_explanation())
    return jsonify(prediction_json(prediction))


def _answers(
    service: InferenceService, group: list[FileStorage], model: str, explain: bool
) -> list[dict[str, Any]]:
    """The group's images classified, as JSON, in order; their pixels are let go on return,
    before the next group is decoded (as a case's are)."""
    return [
        {"error": {"code": o.code, "message": o.message}}
        if isinstance(o, AnalysisRefusedError)
        else prediction_json(service.explain(o) if explain else o)
        for o in service.classify_many([f.read() for f in group], model)
    ]


@bp.get("/openapi.json")
@requires("read")
def openapi() -> Any:
    return jsonify(openapi_document())


@bp.get("/models")
@requires("read")
def models() -> Any:
    service = inference()
    return jsonify(
        default=service.default_model, models=[model_json(card) for card in service.models()]
    )
