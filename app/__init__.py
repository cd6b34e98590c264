"""Flask application factory for the B-ALL blood smear classifier."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from flask.helpers import get_debug_flag

from app.config import PROJECT_ROOT, ConfigError, config_class, finalize
from app.inference import InferenceService


def create_app(
    test_config: dict[str, Any] | None = None,
    *,
    inference: InferenceService | None = None,
) -> Flask:
    """Build the app for ``APP_ENV`` (development unless set; tests pass APP_ENV="testing").

    Every model in MODELS_DIR is loaded and warmed up here, once per process,
    unless a ready-made ``inference`` service is passed (tests share one).
    """
    overrides = dict(test_config or {})
    cls = config_class(overrides.get("APP_ENV") or os.environ.get("APP_ENV"))
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.from_mapping(cls.settings())
    app.config.from_mapping(overrides)
    app.config["APP_ENV"] = cls.ENV_NAME
    if cls.ENV_NAME != "development" and get_debug_flag():
        raise ConfigError("FLASK_DEBUG is set; debug mode is only allowed in development")
    finalize(app.config, cls)
    app.debug = bool(app.config["DEBUG"])
    app.json.sort_keys = False  # keep class ids in their fixed order

    if inference is None:
        inference = InferenceService(app.config["MODELS_DIR"], app.config["DEFAULT_MODEL"]).load()
    app.extensions["inference"] = inference

    from app import api, errors, observability, security, web

    security.init_security(app)
    errors.register_error_handlers(app)
    app.register_blueprint(web.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health_bp)
    security.csrf.exempt(api.bp)
    security.csrf.exempt(api.health_bp)
    observability.init_app(app)
    return app
