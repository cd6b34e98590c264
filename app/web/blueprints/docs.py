"""The API's documentation page, rendered here from the OpenAPI document (no outside UI)."""

from __future__ import annotations

from flask import Blueprint, render_template

from app.web.openapi import openapi_document

bp = Blueprint("docs", __name__)


@bp.get("/api/docs")
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
