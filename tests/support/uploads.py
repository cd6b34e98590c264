"""Multipart uploads through Flask's test client, encoded here.

Werkzeug's test client spools a body over 500 KB that it encodes itself into a
temporary file it never closes; a body encoded here is posted from memory.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.support.server import multipart


def post_upload(
    client: FlaskClient,
    url: str,
    data: bytes,
    filename: str = "upload.jpg",
    field: str = "image",
    **form: str,
) -> Any:
    """POST ``data`` as the file of form field ``field``, with the other ``form`` fields."""
    body, content_type = multipart(dict(form), {field: (filename, data)})
    return client.post(url, data=body, content_type=content_type)
