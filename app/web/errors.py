"""Turns every failure into a status, a stable error code and a message a user can act on.

Core errors carry their own status and code (``app.core.errors``). JSON URLs
answer ``{"error": {"code": ..., "message": ...}}``; other URLs get the error
page. A blueprint that wants its own rendering (the upload form re-shown with
the message) registers its own handler; this module is the app-wide fallback.
Bad input never produces a 500 or a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, flash, get_flashed_messages, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.core.errors import CaptureError, RequestRefusedError

log = logging.getLogger(__name__)

# URL prefixes whose every answer, errors included, is JSON.
JSON_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "undecodable_image",
    429: "too_many_requests",
    500: "internal_error",
    503: "not_ready",
}


class UploadLimitError(RequestEntityTooLarge):
    """A request over one of its limits (its size, its form's parts, a text field's size); the
    description names the limit it passed."""


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for an exception raised while handling a request."""
    if isinstance(exc, RequestRefusedError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, CSRFError):
        return (
            400,
            "csrf_failed",
            ("The form expired or was not sent from this site. Reload the page and try again."),
        )
    if isinstance(exc, UploadLimitError):
        return 413, "payload_too_large", str(exc.description)
    if isinstance(exc, RequestEntityTooLarge):
        max_bytes = request.max_content_length or current_app.config.get("MAX_CONTENT_LENGTH")
        limit = f"{max_bytes / 1024 / 1024:g} MB" if max_bytes else "the upload limit"
        return 413, "payload_too_large", f"The file is too large; the limit is {limit}."
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, exc.name.lower().replace(" ", "_"))
        return status, code, exc.description or exc.name
    return 500, "internal_error", "Something went wrong on our side. Please try again."


# Flash categories of a refused form's message and of what to do about it: the form's own
# page shows them beside the form (base.html leaves them out of its flash list).
FORM_ERROR = "form-error"
FORM_FIX = "form-fix"


def flash_form_error(message: str, fix: str | None = None) -> None:
    """Keep a refused form's message for the page its redirect goes to."""
    flash(message, FORM_ERROR)
    if fix:
        flash(fix, FORM_FIX)


def flashed_form_error() -> tuple[str | None, str | None]:
    """The (message, fix) a refused form flashed for this page, if any."""
    errors = [str(m) for m in get_flashed_messages(category_filter=[FORM_ERROR])]
    fixes = [str(m) for m in get_flashed_messages(category_filter=[FORM_FIX])]
    return (errors[-1] if errors else None), (fixes[-1] if fixes else None)


def error_json(status: int, code: str, message: str, **extra: str) -> tuple[Any, int]:
    return jsonify(error={"code": code, "message": message, **extra}), status


def respond(exc: BaseException) -> Any:
    """The JSON or HTML error response for ``exc`` on the current request."""
    status, code, message = describe(exc)
    if request.path.startswith(JSON_PATHS):
        # A refused capture also says, separately, what is wrong and how to retake it.
        extra = {"reason": exc.reason, "fix": exc.fix} if isinstance(exc, CaptureError) else {}
        body, status = error_json(status, code, message, **extra)
        if status == 401:
            body.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return body, status
    return render_template("error.html", status=status, code=code, message=message), status


def _clash(_exc: IntegrityError) -> Any:
    """A row another request wrote first, wherever it surfaced: a 409, never a 500."""
    from app.web.records import CONCURRENT_CHANGE, ConcurrentChangeError, db

    db().rollback()
    return respond(ConcurrentChangeError(CONCURRENT_CHANGE))


def init_app(app: Flask) -> None:
    """Install the app-wide error handlers."""
    app.register_error_handler(HTTPException, respond)
    app.register_error_handler(RequestRefusedError, respond)
    app.register_error_handler(IntegrityError, _clash)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # The stack trace goes to the log, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond(exc)
