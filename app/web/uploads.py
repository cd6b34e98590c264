"""Reading the uploaded image and the request's options."""

from __future__ import annotations

from flask import request

from app.core.errors import ClassifierError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


class MissingFileError(ClassifierError):
    """The request carries no file in the expected form field."""

    status = 400
    code = "missing_file"


def read_upload(field: str = "image") -> bytes:
    """The bytes of the uploaded file in ``field``; its client-side name is never used."""
    upload = request.files.get(field)
    if upload is None:
        raise MissingFileError(f"No file was uploaded: send the image in the form field {field!r}.")
    if not upload.filename:
        raise MissingFileError("No file was selected: choose an image to analyse.")
    data: bytes = upload.read()
    return data


def requested_model() -> str | None:
    """The ``model`` form field or query parameter, if any."""
    return request.form.get("model") or request.args.get("model")


def wants_explanation() -> bool:
    """``?explain=1`` or form field ``explain=1`` asks for the Grad-CAM and outline PNGs."""
    raw = request.form.get("explain") or request.args.get("explain") or ""
    return raw.strip().lower() in TRUE_WORDS
