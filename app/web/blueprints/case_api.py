"""JSON API for cases (/api/v1/cases): create one from photographs, read it, add to it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for

from app.records.cases import MAX_FIELDS, CaseInputError, get_case, new_case
from app.web.case_presenter import case_json
from app.web.case_uploads import allow_case_upload, analyse_into, uploaded_files
from app.web.extensions import csrf, inference
from app.web.records import db
from app.web.uploads import requested_model

bp = Blueprint("case_api", __name__, url_prefix="/api/v1/cases")
csrf.exempt(bp)  # API clients send no session cookie, so there is no form to forge


@bp.post("")
def create() -> Any:
    """Multipart ``reference``, ``images`` (1-200 files), optional ``note`` and ``model``."""
    allow_case_upload()
    model = inference().served(requested_model()).card
    files = uploaded_files()
    if not files:
        raise CaseInputError(
            f"Send the photographs in the form field 'images': 1 to {MAX_FIELDS} files."
        )
    case = new_case(db(), request.form.get("reference"), request.form.get("note"), model)
    analyse_into(case, files)
    db().commit()
    response = jsonify(case_json(case))
    response.headers["Location"] = url_for("case_api.show", public_id=case.public_id)
    return response, 201


@bp.get("/<public_id>")
def show(public_id: str) -> Any:
    return jsonify(case_json(get_case(db(), public_id)))


@bp.post("/<public_id>/fields")
def add_fields(public_id: str) -> Any:
    allow_case_upload()
    case = get_case(db(), public_id)
    files = uploaded_files()
    if not files:
        raise CaseInputError("Send the photographs in the form field 'images'.")
    analyse_into(case, files)
    db().commit()
    return jsonify(case_json(case)), 201
