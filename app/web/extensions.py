"""Flask extensions, created unbound here and bound to the app in ``create_app``.

The inference service is kept in ``app.extensions`` like any extension;
``inference()`` is how a request reaches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, current_app
from flask_wtf.csrf import CSRFProtect

if TYPE_CHECKING:
    from app.core.service import InferenceService

csrf = CSRFProtect()

_INFERENCE = "inference"


def init_inference(app: Flask, service: InferenceService) -> None:
    app.extensions[_INFERENCE] = service


def inference() -> InferenceService:
    """The app's inference service, shared by every request thread."""
    service: InferenceService = current_app.extensions[_INFERENCE]
    return service
