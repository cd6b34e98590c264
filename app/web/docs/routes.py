"""The API's documentation: a plain reference page rendered from the OpenAPI document, and
a local copy of Swagger UI to try it (the content security policy allows only this server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template

from app.web.auth import requires
from app.web.docs.openapi import openapi_document

bp = Blueprint("docs", __name__)


@bp.get("/api/docs")
@requires("read")
def api_docs() -> str:
    document = openapi_document()
    operations = [
        (path, method.upper(), op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "delete")
    ]
    return render_template(
        "api_docs.html",
        info=document["info"],
        operations=operations,
        path_parameters={p: item.get("parameters", []) for p, item in document["paths"].items()},
        schemas=document["components"]["schemas"],
    )


@bp.get("/api/docs/openapi.json")
@requires("read")
def document() -> Any:
    """The OpenAPI document for the pages (signed in), as /api/v1/openapi.json is for tokens."""
    return jsonify(openapi_document())


@bp.get("/api/docs/try")
@requires("read")
def api_try() -> str:
    return render_template("api_try.html", swagger_ui_version=_swagger_ui_version())


def _swagger_ui_version() -> str:
    """The vendored Swagger UI's version, from the first line of its VERSION file."""
    static = Path(current_app.static_folder or "static")
    first = (static / "vendor" / "swagger-ui" / "VERSION").read_text().splitlines()[0]
    return first.split()[-1]
