"""B-ALL smear classifier: the Flask application factory.

``app.core`` is the ML core (no Flask); ``app.web`` is the web layer built on it.
Flask, the blueprints and the inference service are imported inside
``create_app``, so importing the core (as training does) never loads the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from app.core.service import InferenceService


def create_app(
    test_config: dict[str, Any] | None = None,
    *,
    inference: InferenceService | None = None,
) -> Flask:
    """Build the app for ``APP_ENV`` (development unless set; tests pass APP_ENV="testing").

    No model is loaded here (``flask`` commands need none): the models of MODELS_DIR load
    once per process when serving begins (``app.web.warmup``), unless a ready-made
    ``inference`` service is passed (tests share one).
    """
    from flask import Flask

    from app.web import config

    settings = config.load(test_config)
    app = Flask(
        __name__,
        template_folder=str(config.PROJECT_ROOT / "templates"),
        static_folder=str(config.PROJECT_ROOT / "static"),
    )
    app.config.from_mapping(settings)
    from app.web.template_code import TEMPLATE_CODE

    app.jinja_options = {**app.jinja_options, "bytecode_cache": TEMPLATE_CODE}
    app.debug = bool(app.config["DEBUG"])
    from app.web.json_responses import FastJSONProvider

    app.json = FastJSONProvider(app)

    from app.web import auth, cli, errors, observability, records, security, warmup
    from app.web.accounts import admin
    from app.web.accounts import routes as auth_pages
    from app.web.analysis import routes as analysis
    from app.web.api import cases as case_api
    from app.web.api import routes as api
    from app.web.cases import routes as cases
    from app.web.docs import routes as docs
    from app.web.health import routes as health

    warmup.init_app(app, inference)
    records.init_app(app)
    auth.init_app(app)  # before security: who is asking is checked before the CSRF token
    security.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    app.register_blueprint(auth_pages.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(analysis.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(case_api.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(health.bp)
    observability.init_app(app)
    from app.web import lab_time
    from app.web.analysis.presenter import SUBTYPE_NOTE

    lab_time.init_app(app)
    app.jinja_env.globals["subtype_note"] = SUBTYPE_NOTE  # every page words the subtype alike
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client's address (for the audit trail) and https, as the proxy saw them.
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    if app.config["CREATE_FIRST_ADMIN"]:
        from app.web.accounts.first_admin import ensure_first_admin

        ensure_first_admin(app)
    return app
