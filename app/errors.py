"""Maps every failure to a status, a stable error code and a friendly message.

API and health URLs answer ``{"error": {"code": ..., "message": ...}}``; HTML
URLs get a page (the upload form again, with the message, for failed uploads).
Bad input never produces a 500 or a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.inference import (
    FORMAT_NAMES,
    ImageDecodeError,
    ImageTooLargeError,
    NotReadyError,
    UnknownModelError,
    UnsupportedImageError,
)

log = logging.getLogger(__name__)

JSON_PATHS = ("/api/", "/healthz", "/readyz")

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "undecodable_image",
    500: "internal_error",
    503: "not_ready",
}


class MissingFileError(ValueError):
    """The request carries no file in the expected form field."""


def describe(exc: BaseException, max_bytes: int | None = None) -> tuple[int, str, str]:
    """(status, code, message) for an exception raised while handling a request."""
    if isinstance(exc, MissingFileError):
        return 400, "missing_file", str(exc)
    if isinstance(exc, UnknownModelError):
        return 400, "unknown_model", str(exc)
    if isinstance(exc, UnsupportedImageError):
        return 415, "unsupported_media_type", str(exc)
    if isinstance(exc, ImageTooLargeError):
        return 413, "image_too_large", f"The image has too many pixels: {str(exc).rstrip('.')}."
    if isinstance(exc, ImageDecodeError):
        return 422, "undecodable_image", (
            f"The image could not be decoded ({exc}). Upload a complete {FORMAT_NAMES} file."
        )
    if isinstance(exc, NotReadyError):
        return 503, "not_ready", str(exc)
    if isinstance(exc, CSRFError):
        return 400, "csrf_failed", (
            "The form expired or was not sent from this site. Reload the page and try again."
        )
    if isinstance(exc, RequestEntityTooLarge):
        limit = f"{max_bytes / 1024 / 1024:g} MB" if max_bytes else "the upload limit"
        return 413, "payload_too_large", f"The file is too large; the limit is {limit}."
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return status, HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), exc.description
    return 500, "internal_error", "Something went wrong on our side. Please try again."


def wants_json() -> bool:
    return request.path.startswith(JSON_PATHS)


def error_json(status: int, code: str, message: str) -> tuple[Any, int]:
    return jsonify(error={"code": code, "message": message}), status


def register_error_handlers(app: Flask) -> None:
    for error in (HTTPException, MissingFileError, UnknownModelError, UnsupportedImageError,
                  ImageTooLargeError, ImageDecodeError, NotReadyError):
        app.register_error_handler(error, respond)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # The stack trace goes to the log, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond(exc)


def respond(exc: BaseException) -> Any:
    """The JSON or HTML error response for ``exc`` on the current request."""
    status, code, message = describe(exc, current_app.config.get("MAX_CONTENT_LENGTH"))
    if wants_json():
        return error_json(status, code, message)
    if request.endpoint == "web.analyze" and status in (400, 413, 415, 422, 503):
        from app.web import render_upload  # the web blueprint owns the form page

        return render_upload(error=message, status=status)
    return render_template("error.html", status=status, code=code, message=message), status
