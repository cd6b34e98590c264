"""JSON API for cases (/api/v1/cases): create one from photographs, read it, add to it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for

from app.records.cases import (
    MAX_FIELDS,
    CaseInputError,
    CellNotFoundError,
    get_case,
    new_case,
    search_cases,
)
from app.web.auth import actor, audit, requires
from app.web.cases.cell_gallery import save_reclassification
from app.web.cases.presenter import case_json, case_summary_json
from app.web.cases.reviews import api_review, save_review
from app.web.cases.uploads import (
    CASE_UPLOAD_LIMIT,
    add_to_case,
    analyse_into,
    case_query,
    remove_case,
    uploaded_files,
)
from app.web.extensions import csrf, inference
from app.web.records import commit, db
from app.web.security import upload_limit
from app.web.uploads import requested_model

# PostgreSQL's INTEGER ids end here, and it refuses to compare a bigger number with one.
MAX_ROW_ID = 2**31 - 1

bp = Blueprint("case_api", __name__, url_prefix="/api/v1/cases")
csrf.exempt(bp)  # API clients send no session cookie, so there is no form to forge


@bp.post("")
@requires("analyse")
@upload_limit(CASE_UPLOAD_LIMIT)
def create() -> Any:
    """Multipart ``reference``, ``images`` (1-200 files), optional ``note`` and ``model``."""
    model = inference().served(requested_model()).card
    files = uploaded_files()
    if not files:
        raise CaseInputError(
            f"Send the photographs in the form field 'images': 1 to {MAX_FIELDS} files."
        )
    case = new_case(
        db(), request.form.get("reference"), request.form.get("note"), model, created_by=actor()
    )
    analyse_into(case, files)
    audit("case_created", "case", case.public_id, fields=len(files), model=model.name)
    commit()
    response = jsonify(case_json(case))
    response.headers["Location"] = url_for("case_api.show", public_id=case.public_id)
    return response, 201


@bp.get("")
@requires("read")
def index() -> Any:
    """Search the cases: ``reference``, ``from``, ``to`` (YYYY-MM-DD), ``status``, ``review``,
    ``page`` (25 a page, newest first)."""
    query = case_query()
    cases, total = search_cases(db(), query)
    return jsonify(
        cases=[case_summary_json(c) for c in cases],
        total=total,
        page=query.page,
        per_page=query.per_page,
    )


@bp.get("/<public_id>")
@requires("read")
def show(public_id: str) -> Any:
    case = get_case(db(), public_id)
    audit("case_viewed", "case", case.public_id)
    commit()
    return jsonify(case_json(case))


@bp.get("/<public_id>/report.pdf")
@requires("read")
def report_pdf(public_id: str) -> Any:
    from app.web.cases.pdf import exported_pdf  # fpdf2 only when a report is asked for

    return exported_pdf(get_case(db(), public_id))


@bp.delete("/<public_id>")
@requires("delete")
def delete(public_id: str) -> Any:
    """Delete the case with its images and stored photographs."""
    remove_case(get_case(db(), public_id))
    return "", 204


@bp.post("/<public_id>/review")
@requires("review")
def review(public_id: str) -> Any:
    """JSON or form: ``decision`` (agree or override), ``class`` (a class or a finding,
    when overriding), ``finding`` (the words of ``other_finding``), ``comment``,
    ``sign_off`` (true to sign off), ``microscope_confirmation`` (what was seen at the
    microscope, in place of opening the flagged fields), ``acknowledge_incomplete``,
    ``corrects``."""
    body = request.get_json(silent=True) if request.is_json else None
    data = body if isinstance(body, dict) else request.form
    case = get_case(db(), public_id)
    save_review(case, api_review(data))
    return jsonify(case_json(case)), 201


@bp.post("/<public_id>/cells")
@requires("review")
def reclassify(public_id: str) -> Any:
    """JSON or form: ``cell``, the id of a cell a cell model read (``images[].cells[].id``),
    and ``class``, the reviewer's class for it; the model's own class confirms it."""
    body = request.get_json(silent=True) if request.is_json else None
    data = body if isinstance(body, dict) else request.form
    case = get_case(db(), public_id)
    chosen = data.get("class")
    save_reclassification(
        case, _cell_id(data.get("cell")), chosen if isinstance(chosen, str) else None
    )
    return jsonify(case_json(case))


def _cell_id(raw: object) -> int:
    """A cell's id as JSON or a form sends it; a number no database row can have is none."""
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 < raw <= MAX_ROW_ID:
        raise CellNotFoundError("There is no such classified cell in this case.")
    return raw


@bp.post("/<public_id>/fields")
@requires("analyse")
@upload_limit(CASE_UPLOAD_LIMIT)
def add_fields(public_id: str) -> Any:
    case, _ = add_to_case(public_id, "Send the photographs in the form field 'images'.")
    return jsonify(case_json(case)), 201
