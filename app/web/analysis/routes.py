"""The pages: the upload form, the result page, and the models' intended use and limits.

The form's POST answers with a redirect (POST, redirect, GET), so Back, Forward and
reload never send the photograph again. The photograph is analysed in memory and never
written anywhere; what the result page shows (its text, a downscaled copy and the
heatmaps, rendered) is held in the database for the sign-in that asked, for a few
minutes (``app.records.held``), and the redirect's GET shows it from there.

Errors of this blueprint (a bad upload, an expired form, a file over the limit)
redirect to the upload form with the message flashed, ready for another try.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.errors import CaptureError, RequestRefusedError
from app.core.formats import FORMAT_NAMES
from app.records import held
from app.web.analysis.presenter import result_page
from app.web.auth import identity, requires, sign_in_key
from app.web.errors import describe, flash_form_error, flashed_form_error
from app.web.extensions import inference
from app.web.records import commit, db
from app.web.uploads import read_upload

bp = Blueprint("analysis", __name__)

RESULT_GONE = (
    f"That result is no longer kept: a quick check's result stays for {held.HOLD_MINUTES} "
    "minutes, for the sign-in that asked. Analyse the photograph again."
)


def render_upload() -> tuple[str, int]:
    """The upload page, with the message (and what to do) of a refused form, if any."""
    service = inference()
    models = service.models() if service.ready else []
    selected = request.args.get("model")
    if selected not in {card.name for card in models}:
        selected = service.default_model
    max_mb = f"{current_app.config['MAX_CONTENT_LENGTH'] / 1024 / 1024:g}"
    error, fix = flashed_form_error()
    page = render_template(
        "upload.html",
        models=models,
        selected=selected,
        error=error,
        fix=fix,
        max_mb=max_mb,
        formats=FORMAT_NAMES,
    )
    return page, 200


def _posted_model() -> str | None:
    """The model chosen in the posted form (or named in its URL), if it could be read."""
    try:
        chosen = request.form.get("model")
    except RequestEntityTooLarge:  # the body was refused unread; keep the URL's choice
        chosen = None
    return chosen or request.args.get("model")


@bp.get("/")
@requires("read")
def index() -> Any:
    """The quick check's form; a role that cannot analyse is sent to the case list."""
    who = identity()
    if who is not None and not who.can("analyse"):
        return redirect(url_for("cases.index"))
    return render_upload()


@bp.get("/models")
@requires("read")
def models() -> str:
    """Each served model's card: what it is for and not for, where it fails, its data."""
    service = inference()
    cards = service.models() if service.ready else []
    return render_template("models.html", models=cards, default=service.default_model)


@bp.post("/analyze")
@requires("analyse")
def analyze() -> Any:
    """Classify the uploaded image, hold its rendered result, and redirect to it."""
    service = inference()
    model = service.resolve(request.form.get("model"))
    g.model_name = model
    prediction = service.predict(read_upload("image"), model, explain=True)
    shown = _rendered_blocks("result.html", ("title", "content"), result=result_page(prediction))
    key = held.hold(db(), sign_in_key(), "result", shown)
    commit()
    return redirect(url_for("analysis.result", key=key), code=303)


@bp.get("/result/<key>")
@requires("analyse")
def result(key: str) -> Any:
    """A held quick-check result: only for the sign-in that asked, for a few minutes."""
    page = held.find(db(), sign_in_key(), key, "result")
    if page is None:
        flash(RESULT_GONE, "info")
        return redirect(url_for("analysis.index"), code=303)
    return render_template("result.html", held=page.payload), 200


def _rendered_blocks(template_name: str, blocks: tuple[str, ...], **context: Any) -> dict[str, str]:
    """The named blocks of a page, rendered now (the layout around them is rendered on GET)."""
    template = current_app.jinja_env.get_template(template_name)
    current_app.update_template_context(context)
    rendered = template.new_context(context)
    return {name: "".join(template.blocks[name](rendered)) for name in blocks}


@bp.errorhandler(RequestRefusedError)
@bp.errorhandler(CSRFError)
@bp.errorhandler(RequestEntityTooLarge)
def form_error(exc: Exception) -> Any:
    """Back to the form (with the chosen model), the message and its fix flashed."""
    db().rollback()
    _, _, message = describe(exc)
    if isinstance(exc, CaptureError):
        flash_form_error(f"This photograph was not analysed: {exc.reason}.", exc.fix)
    else:
        flash_form_error(message)
    model = _posted_model() if request.method == "POST" else None
    return redirect(url_for("analysis.index", model=model), code=303)
