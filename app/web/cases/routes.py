"""Case pages: create a case from many photographs, read it, review it, print it, delete it.

Every POST ends in a redirect to a page (POST, redirect, GET), so Back, Forward and
reload never resend a form, and a case's URL can be shared. A refused review, upload or
deletion of a case redirects too: the message and the form's values wait in the session
for the page's next GET.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.errors import RequestRefusedError
from app.core.formats import FORMAT_NAMES
from app.core.imaging import jpeg_bytes
from app.core.preprocessing import load_image, prepare
from app.records.cases import (
    FINDINGS,
    MAX_FIELDS,
    OTHER_FINDING,
    CaseInputError,
    cell_image,
    cell_index,
    find_case,
    flagged_fields,
    get_case,
    new_case,
    record_field_view,
    search_cases,
    verdict,
)
from app.records.schema import Case, CaseField
from app.web.analysis.presenter import result_page
from app.web.auth import actor, audit, requires
from app.web.cases.cell_gallery import (
    SHORT_NAMES,
    case_cells,
    class_groups,
    differential,
    next_in_group,
    reclassified_message,
    save_reclassification,
)
from app.web.cases.presenter import (
    FILTERS,
    REVIEW_LABELS,
    STATUS_LABELS,
    case_findings,
    case_headline,
    case_json,
    evidence,
    field_group,
    field_label,
    model_display_name,
    people_names,
    review_label,
    rule_text,
)
from app.web.cases.reviews import FORM_FIELDS, form_review, save_review
from app.web.cases.uploads import (
    CASE_UPLOAD_LIMIT,
    add_to_case,
    analyse_into,
    case_query,
    remove_case,
    uploaded_files,
)
from app.web.errors import describe
from app.web.extensions import inference
from app.web.records import commit, db, image_store
from app.web.security import upload_limit

bp = Blueprint("cases", __name__, url_prefix="/cases")

# The session key of a refused case form waiting for its page's next GET.
REFUSED_FORM = "refused_case_form"
# Which form of the case page a refused POST came from, and where its page shows it.
FORM_OF_ENDPOINT = {
    "cases.review": "review",
    "cases.add_fields": "add",
    "cases.delete": "delete",
    "cases.reclassify": "cells",
}
FORM_ANCHORS = {"review": "#review-error", "add": "#add-error", "cells": "#cells-error"}
MAX_CARRIED = 2000
# PostgreSQL's INTEGER ids end here, and it refuses to compare a bigger number with one.
MAX_ROW_ID = 2**31 - 1
# The query keys the page links carry on (never url_for's own, such as _method).
CASE_FILTERS = ("reference", "from", "to", "status", "review")


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def render_new(error: str | None = None, status: int = 200) -> tuple[str, int]:
    service = inference()
    models = service.models() if service.ready else []
    selected = request.form.get("model") if request.method == "POST" else None
    if selected not in {card.name for card in models}:
        selected = request.args.get("model") or service.default_model
    page = render_template(
        "case_new.html",
        models=models,
        selected=selected,
        error=error,
        reference=request.form.get("reference", "") if request.method == "POST" else "",
        note=request.form.get("note", "") if request.method == "POST" else "",
        max_fields=MAX_FIELDS,
        max_mb=f"{current_app.config['MAX_CONTENT_LENGTH'] / 1024 / 1024:g}",
        formats=FORMAT_NAMES,
        store_images=image_store() is not None,
    )
    return page, status


@bp.get("/")
@requires("read")
def index() -> tuple[str, int]:
    """The case history: searched by reference, date, verdict and review state, by pages."""
    try:
        query = case_query()
    except CaseInputError as exc:
        return render_template(
            "case_list.html", rows=[], total=0, query=None, error=exc.message
        ), 422
    cases, total = search_cases(db(), query)
    rows = [(c, verdict(c)) for c in cases]
    pages = max(1, -(-total // query.per_page))
    args = {k: v for k, v in request.args.items() if k in CASE_FILTERS and v}
    return (
        render_template(
            "case_list.html",
            rows=rows,
            total=total,
            query=query,
            pages=pages,
            args=args,
            headline=case_headline,
            statuses=STATUS_LABELS,
            review_states=REVIEW_LABELS,
        ),
        200,
    )


@bp.get("/new")
@requires("analyse")
def new() -> tuple[str, int]:
    return render_new()


@bp.post("/")
@requires("analyse")
@upload_limit(CASE_UPLOAD_LIMIT)
def create() -> Any:
    """Create a case from the form; its photographs come with it, or one by one after it
    (``files_follow=N``: the page's script sends N, one at a time, and shows the progress;
    the case then says if fewer arrived)."""
    service = inference()
    model = service.served(request.form.get("model")).card
    files = uploaded_files()
    expected = _announced(request.form.get("files_follow"))
    if not files and expected is None:
        raise CaseInputError(f"Choose the photographs of the smear: 1 to {MAX_FIELDS} images.")
    case = new_case(
        db(), request.form.get("reference"), request.form.get("note"), model, created_by=actor()
    )
    case.expected_fields = expected
    analyse_into(case, files)
    audit("case_created", "case", case.public_id, fields=expected or len(files), model=model.name)
    commit()
    url = url_for("cases.show", public_id=case.public_id)
    if _wants_json():
        fields_url = url_for("cases.add_fields", public_id=case.public_id)
        return jsonify(id=case.public_id, url=url, fields_url=fields_url), 201
    return redirect(url, code=303)


def _announced(raw: str | None) -> int | None:
    """``files_follow``: how many photographs the page's script will send one by one."""
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_FIELDS:
        raise CaseInputError(f"A case holds 1 to {MAX_FIELDS} photographs.")
    return int(raw)


@bp.post("/<public_id>/fields")
@requires("analyse")
@upload_limit(CASE_UPLOAD_LIMIT)
def add_fields(public_id: str) -> Any:
    """More photographs for an open case (the page's script sends them one at a time)."""
    _, added = add_to_case(public_id, "Choose one or more photographs to add.")
    if _wants_json():
        return jsonify(
            images=[
                {"position": f.position, "status": field_group(f), "label": field_label(f)}
                for f in added
            ]
        )
    flash(f"{len(added)} photograph(s) added.")
    return redirect(url_for("cases.show", public_id=public_id), code=303)


@bp.get("/<public_id>")
@requires("read")
def show(public_id: str) -> Any:
    case = get_case(db(), public_id)
    audit("case_viewed", "case", case.public_id)
    commit()
    if _wants_json():
        return jsonify(case_json(case))
    return render_case(case)


def render_case(case: Case) -> tuple[str, int]:
    """The case page, with the message and values of a form of it that was refused."""
    shown = request.args.get("show", "all")
    if shown not in FILTERS:
        shown = "all"
    v = verdict(case)
    fields = [(f, field_group(f), field_label(f)) for f in case.fields]
    counts = {k: sum(1 for _, g, _ in fields if g == k) for k in FILTERS}
    counts["all"] = len(fields)
    refused = refused_form(case.public_id, ("review", "add"))
    cells, cell_counts = case_cells(case)
    page = render_template(
        "case.html",
        # A cell model's cells have classes: their differential, and a gallery of their own.
        gallery=None if cells else cell_gallery(case, {f.position: g for f, g, _ in fields}),
        differential=differential(cell_counts) if cells else None,
        cell_counts=cell_counts,
        case=case,
        verdict=v,
        headline=case_headline(v),
        findings=case_findings(v),
        evidence=evidence(v),
        fields=fields,
        shown=shown,
        filters=FILTERS,
        counts=counts,
        review_label=review_label,
        class_ids=CLASS_IDS,
        display_names=DISPLAY_NAMES,
        review_findings=FINDINGS,
        other_finding=OTHER_FINDING,
        flagged=flagged_fields(db(), case, actor()),
        signed=case.signed_off,
        review_numbers={r.id: i for i, r in enumerate(case.reviews, start=1)},
        model_name=model_display_name(case.model_name),
        review_error=refused["message"] if refused.get("form") == "review" else None,
        add_error=refused["message"] if refused.get("form") == "add" else None,
        form=refused.get("values", {}),
        max_fields=MAX_FIELDS,
    )
    return page, 200


def refused_form(public_id: str, forms: tuple[str, ...]) -> dict[str, Any]:
    """A refused form of this case (one of ``forms``) waiting in the session, taken out:
    its message is shown once."""
    waiting = session.get(REFUSED_FORM)
    if not isinstance(waiting, dict) or waiting.get("case") != public_id:
        return {}
    if waiting.get("form") not in forms:
        return {}
    session.pop(REFUSED_FORM)
    return waiting


def cell_gallery(
    case: Case, groups: dict[int, str]
) -> list[tuple[str, list[tuple[int, int, int]]]]:
    """A model of the whole field's segmented cells, which have no class of their own,
    grouped by their field's verdict, groups in FILTERS order."""
    by_group: dict[str, list[tuple[int, int, int]]] = {}
    for crop_id, position, index in cell_index(db(), case):
        by_group.setdefault(groups[position], []).append((crop_id, position, index))
    return [(FILTERS[g], by_group[g]) for g in FILTERS if g in by_group]


@bp.get("/<public_id>/cells")
@requires("read")
def cells(public_id: str) -> tuple[str, int]:
    """A cell model's cells by class with the differential; a reviewer reclassifies here."""
    case = get_case(db(), public_id)
    found, counts = case_cells(case)
    refused = refused_form(case.public_id, ("cells",))
    page = render_template(
        "case_cells.html",
        case=case,
        groups=class_groups(found),
        differential=differential(counts),
        cell_counts=counts,
        class_ids=CLASS_IDS,
        short_names=SHORT_NAMES,
        signed=case.signed_off,
        model_name=model_display_name(case.model_name),
        cells_error=refused.get("message"),
    )
    return page, 200


@bp.post("/<public_id>/cells/<int:crop_id>/class")
@requires("review")
def reclassify(public_id: str, crop_id: int) -> Any:
    """A reviewer's class for one cell; back to the gallery at the next cell of its old
    class, where the review goes on."""
    if crop_id > MAX_ROW_ID:
        abort(404)
    case = get_case(db(), public_id)
    before, _ = case_cells(case)
    done = save_reclassification(case, crop_id, request.form.get("class_id"))
    after, _ = case_cells(case)
    flash(reclassified_message(done, after))
    at = next_in_group(before, crop_id) if done is not None else crop_id
    anchor = f"#cell-{at}" if at is not None else "#differential"
    return redirect(url_for("cases.cells", public_id=public_id) + anchor, code=303)


@bp.get("/<public_id>/cells/<int:crop_id>.jpg")
@requires("read")
def cell(public_id: str, crop_id: int) -> Response:
    if crop_id > MAX_ROW_ID:  # no such row, and the database cannot even compare it
        abort(404)
    image = cell_image(db(), get_case(db(), public_id), crop_id)
    if image is None:
        abort(404)
    response = Response(image, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.get("/<public_id>/report")
@requires("read")
def report(public_id: str) -> str:
    """The printable record of the case."""
    case = get_case(db(), public_id)
    audit("report_exported", "case", case.public_id, format="print")
    commit()
    v = verdict(case)
    return render_template(
        "case_report.html",
        case=case,
        verdict=v,
        headline=case_headline(v),
        findings=case_findings(v),
        evidence=evidence(v),
        fields=[(f, field_label(f)) for f in case.fields],
        model_name=model_display_name(case.model_name),
        rule_text=rule_text(case),
        names=people_names(case),
        review_label=review_label,
        signed=case.signed_off,
    )


@bp.get("/<public_id>/report.pdf")
@requires("read")
def report_pdf(public_id: str) -> Response:
    from app.web.cases.pdf import exported_pdf  # fpdf2 only when a report is asked for

    return exported_pdf(get_case(db(), public_id))


@bp.get("/<public_id>/fields/<int:position>")
@requires("read")
def field(public_id: str, position: int) -> Any:
    """One field: the full result view, explained again from the stored original."""
    case = get_case(db(), public_id)
    item = next((f for f in case.fields if f.position == position), None)
    if item is None:
        abort(404)
    page = _field_page(case, item)
    # Shown to this reviewer: a sign-off asks for it (a second opening changes nothing).
    record_field_view(db(), case, position, actor())
    commit()
    return page


def _field_page(case: Case, item: CaseField) -> str:
    store = image_store()
    original = store.get(item.sha256) if store is not None and item.stored else None
    context = {"case": case, "item": item, "label": field_label(item)}
    service = inference()
    card = service.served(case.model_name).card
    if original is None or item.state == "refused":
        return render_template("case_field.html", **context, result=None, same_model=True)
    prediction = service.predict(original, case.model_name, explain=True)
    same_model = card.version == case.model_version
    return render_template(
        "case_field.html", **context, result=result_page(prediction), same_model=same_model
    )


@bp.get("/<public_id>/fields/<int:position>/field.jpg")
@requires("read")
def field_image(public_id: str, position: int) -> Response:
    """The square the model saw, at the stored photograph's own resolution."""
    case = get_case(db(), public_id)
    item = next((f for f in case.fields if f.position == position), None)
    store = image_store()
    original = store.get(item.sha256) if item and item.stored and store is not None else None
    if original is None:
        abort(404)
    card = inference().served(case.model_name).card
    photograph = load_image(original)
    # A cell model reads the whole photograph; a field model its square field.
    seen = (
        photograph
        if card.unit == "cell"
        else prepare(photograph, card.input_size, card.scale).field
    )
    response = Response(jpeg_bytes(seen, quality=92), mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.get("/<public_id>/fields/<int:position>/thumbnail.jpg")
@requires("read")
def thumbnail(public_id: str, position: int) -> Response:
    case = get_case(db(), public_id)
    item = next((f for f in case.fields if f.position == position), None)
    if item is None or item.thumbnail is None:
        abort(404)
    response = Response(item.thumbnail, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.post("/<public_id>/reviews")
@requires("review")
def review(public_id: str) -> Any:
    case = get_case(db(), public_id)
    save_review(case, form_review(request.form))
    flash("Signed off: the case is now read-only." if case.signed_off else "Review saved.")
    return redirect(url_for("cases.show", public_id=public_id) + "#review", code=303)


@bp.get("/<public_id>/delete")
@requires("delete")
def confirm_delete(public_id: str) -> str:
    error = refused_form(public_id, ("delete",)).get("message")
    return render_template("case_delete.html", case=get_case(db(), public_id), error=error)


@bp.post("/<public_id>/delete")
@requires("delete")
def delete(public_id: str) -> Any:
    case = get_case(db(), public_id)
    if request.form.get("confirm") != case.reference:
        raise CaseInputError("Type the case reference exactly to confirm the deletion.")
    remove_case(case)
    flash(f"Case {case.reference} was deleted with its photographs.")
    return redirect(url_for("cases.index"), code=303)


@bp.errorhandler(RequestRefusedError)
@bp.errorhandler(CSRFError)
@bp.errorhandler(RequestEntityTooLarge)
def case_error(exc: Exception) -> Any:
    """JSON for the page's script; for a case's own forms, a redirect to its page, which
    then shows the message (and the review's values); the new-case form again."""
    db().rollback()  # nothing of a failed request is kept
    status, code, message = describe(exc)
    if _wants_json():
        return jsonify(error={"code": code, "message": message}), status
    if request.endpoint == "cases.create":
        return render_new(error=message, status=status)
    public_id = str((request.view_args or {}).get("public_id") or "")
    # The form's case, if there is one (a refused form may name a case that does not exist).
    case = find_case(db(), public_id) if request.method == "POST" and public_id else None
    form = FORM_OF_ENDPOINT.get(request.endpoint or "")
    if case is not None and form is not None:
        return _back_to_form(case, form, message)
    return render_template("error.html", status=status, code=code, message=message), status


def _back_to_form(case: Case, form: str, message: str) -> Any:
    """Redirect (303) to the page of the refused form; the session carries what it shows."""
    session[REFUSED_FORM] = {
        "case": case.public_id,
        "form": form,
        "message": message,
        "values": _carried_values() if form == "review" else {},
    }
    if form == "delete":
        return redirect(url_for("cases.confirm_delete", public_id=case.public_id), code=303)
    page = "cases.cells" if form == "cells" else "cases.show"
    url = url_for(page, public_id=case.public_id) + FORM_ANCHORS[form]
    return redirect(url, code=303)


def _carried_values() -> dict[str, str]:
    """The review form's values, cut to what a session cookie can hold."""
    return {k: request.form[k][:MAX_CARRIED] for k in FORM_FIELDS if k in request.form}
