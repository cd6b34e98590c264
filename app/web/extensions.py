"""Flask extensions, created unbound here and bound to the app in ``create_app``.

The inference service is kept in ``app.extensions`` like any extension, behind its
warm-up (``app.web.warmup``); ``inference()`` is how a request reaches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_wtf.csrf import CSRFProtect

from app.web.warmup import EXTENSION, ModelWarmup

if TYPE_CHECKING:
    from app.core.service import InferenceService

csrf = CSRFProtect()


def model_warmup() -> ModelWarmup:
    """The app's models, loaded or not: what /readyz asks about."""
    warmup: ModelWarmup = current_app.extensions[EXTENSION]
    return warmup


def inference() -> InferenceService:
    """The app's inference service, shared by every request thread; the first request that
    needs it waits while the models load."""
    return model_warmup().load()
