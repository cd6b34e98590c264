"""Reading the uploaded image and the request's options."""

from __future__ import annotations

from flask import request
from werkzeug.datastructures import FileStorage

from app.core.errors import RequestRefusedError
from app.core.preprocessing import DECODE_BUDGET, decoding_cost

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
# Photographs decoded and classified together: at most this many (one model pass), costing at
# most DECODE_BUDGET together, so a request with many photographs holds one group at a time.
GROUP_FILES = 64


class MissingFileError(RequestRefusedError):
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


def decoding_groups(files: list[FileStorage]) -> list[list[FileStorage]]:
    """The files in their order, grouped within GROUP_FILES and DECODE_BUDGET: a group of
    small photographs is one model pass, a photograph at the pixel limit is a group alone."""
    groups: list[list[FileStorage]] = [[]]
    cost = 0
    for upload in files:
        size = decoding_cost(upload.stream)
        if groups[-1] and (len(groups[-1]) >= GROUP_FILES or cost + size > DECODE_BUDGET):
            groups.append([])
            cost = 0
        groups[-1].append(upload)
        cost += size
    return [group for group in groups if group]
