"""The pages: the upload form and the result page (nothing is stored).

Errors of this blueprint (a bad upload, an expired form, a file over the limit)
show the upload form again with the message, ready for another try.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.errors import CaptureError, ClassifierError
from app.core.formats import FORMAT_NAMES
from app.web.auth import requires
from app.web.errors import describe
from app.web.extensions import inference
from app.web.presenter import result_page
from app.web.uploads import read_upload

bp = Blueprint("analysis", __name__)


def render_upload(
    error: str | None = None, status: int = 200, fix: str | None = None
) -> tuple[str, int]:
    """The upload page, optionally with an error message and what to do about it."""
    service = inference()
    models = service.models() if service.ready else []
    selected = _posted_model() or request.args.get("model")
    if selected not in {card.name for card in models}:
        selected = service.default_model
    max_mb = f"{current_app.config['MAX_CONTENT_LENGTH'] / 1024 / 1024:g}"
    page = render_template(
        "upload.html",
        models=models,
        selected=selected,
        error=error,
        fix=fix,
        max_mb=max_mb,
        formats=FORMAT_NAMES,
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
@requires("analyse")
def index() -> tuple[str, int]:
    return render_upload()


@bp.post("/analyze")
@requires("analyse")
def analyze() -> tuple[str, int]:
    """Classify the uploaded image and render the result with its explanation."""
    service = inference()
    model = service.resolve(request.form.get("model"))
    g.model_name = model
    prediction = service.predict(read_upload("image"), model, explain=True)
    return render_template("result.html", r=result_page(prediction)), 200


@bp.errorhandler(ClassifierError)
@bp.errorhandler(CSRFError)
@bp.errorhandler(RequestEntityTooLarge)
def form_error(exc: Exception) -> tuple[str, int]:
    status, _, message = describe(exc)
    if isinstance(exc, CaptureError):
        reason = f"This photograph was not analysed: {exc.reason}."
        return render_upload(error=reason, status=status, fix=exc.fix)
    return render_upload(error=message, status=status)
