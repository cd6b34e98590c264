"""Configuration per environment (development, testing, production), read from env vars.

Env vars are read when ``settings()`` is called, not at import, so tests and
``create_app`` see the environment of the moment.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask.helpers import get_debug_flag

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_MAX_UPLOAD_MB = 50.0
# A case's photographs in one request (the form without JavaScript, the API).
DEFAULT_MAX_CASE_UPLOAD_MB = 400.0


# Production refuses a shorter SECRET_KEY (one that can be guessed signs anyone's session).
MIN_SECRET_KEY_BYTES = 32


class ConfigError(RuntimeError):
    """The configuration is unusable; the app refuses to start."""


class Config:
    """Settings shared by every environment."""

    ENV_NAME = "base"
    DEBUG = False
    TESTING = False
    # The cell LeNet beat the whole-field one on the validation blocks (docs/decisions.md).
    DEFAULT_MODEL = "cell_lenet"
    # Production must be given a key; elsewhere a random one is fine (sessions
    # only carry the CSRF token, so losing them on restart costs nothing).
    REQUIRE_SECRET_KEY = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # The cookie is written only when the session changes: a late answer to an older request
    # (an image still loading) can then never put back what a newer one took out.
    SESSION_REFRESH_EACH_REQUEST = False
    SESSION_COOKIE_SECURE = False
    WTF_CSRF_TIME_LIMIT = 3600 * 8
    # A browser sign-in ends after this long without a request, and this long after it began.
    SESSION_IDLE_MINUTES = 60
    SESSION_LIFETIME_HOURS = 12
    # Sign-in attempts allowed (Flask-Limiter notation), from one address and for one account.
    LOGIN_RATE_PER_ADDRESS = "30 per minute"
    LOGIN_RATE_PER_ACCOUNT = "10 per minute"
    # Development only: make an admin with a one-time password when there is no user.
    CREATE_FIRST_ADMIN = False
    # A server without gunicorn's hook (flask run) starts loading the models on its first
    # request, so they warm while the user signs in (app.web.warmup).
    WARM_UP_ON_FIRST_REQUEST = True

    @classmethod
    def settings(cls, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The class defaults overlaid with what the environment provides."""
        env = os.environ if environ is None else environ
        values = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        values["MODELS_DIR"] = env.get("MODELS_DIR") or str(DEFAULT_MODELS_DIR)
        values["DEFAULT_MODEL"] = env.get("DEFAULT_MODEL") or cls.DEFAULT_MODEL
        values["MAX_CONTENT_LENGTH"] = _megabytes(
            env.get("MAX_UPLOAD_MB"), DEFAULT_MAX_UPLOAD_MB, "MAX_UPLOAD_MB"
        )
        values["SECRET_KEY"] = env.get("SECRET_KEY") or None
        # None: a SQLite file in the instance folder (set by the factory, which knows it).
        values["DATABASE_URL"] = env.get("DATABASE_URL") or None
        # 0: the schema is migrated by its owner (python -m app.records.migrate), not at start.
        values["MIGRATE_ON_START"] = _flag(env.get("MIGRATE_ON_START", "1"))
        values["IMAGE_STORE"] = env.get("IMAGE_STORE") or None
        values["STORE_IMAGES"] = _flag(env.get("STORE_IMAGES", "1"))
        values["MAX_CASE_UPLOAD_BYTES"] = _megabytes(
            env.get("MAX_CASE_UPLOAD_MB"), DEFAULT_MAX_CASE_UPLOAD_MB, "MAX_CASE_UPLOAD_MB"
        )
        values["SESSION_IDLE_MINUTES"] = _number(
            env.get("SESSION_IDLE_MINUTES"), cls.SESSION_IDLE_MINUTES, "SESSION_IDLE_MINUTES"
        )
        values["SESSION_LIFETIME_HOURS"] = _number(
            env.get("SESSION_LIFETIME_HOURS"), cls.SESSION_LIFETIME_HOURS, "SESSION_LIFETIME_HOURS"
        )
        # Proxies in front of the app whose X-Forwarded-* headers are believed (0: none).
        values["TRUSTED_PROXIES"] = int(
            _number(env.get("TRUSTED_PROXIES"), 0.0, "TRUSTED_PROXIES", allow_zero=True)
        )
        # Where login throttling counts (memory:// is per process; redis://... is shared).
        values["RATELIMIT_STORAGE_URI"] = env.get("RATELIMIT_STORAGE_URI") or "memory://"
        # The lab's time zone (an IANA name): pages and reports show times in it, labelled.
        values["LAB_TIMEZONE"] = env.get("LAB_TIMEZONE") or "UTC"
        if "SESSION_COOKIE_SECURE" in env:
            values["SESSION_COOKIE_SECURE"] = _flag(env["SESSION_COOKIE_SECURE"])
        return values


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    DEBUG = True
    CREATE_FIRST_ADMIN = True


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    # Most test apps never predict: they load models only when a request needs one.
    WARM_UP_ON_FIRST_REQUEST = False


class ProductionConfig(Config):
    ENV_NAME = "production"
    REQUIRE_SECRET_KEY = True
    SESSION_COOKIE_SECURE = True
    PREFERRED_URL_SCHEME = "https"


CONFIGS: dict[str, type[Config]] = {
    c.ENV_NAME: c for c in (DevelopmentConfig, TestingConfig, ProductionConfig)
}


def config_class(env_name: str | None) -> type[Config]:
    """The config class for ``env_name`` (``APP_ENV``); development when unset."""
    name = (env_name or "development").strip().lower()
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(
            f"APP_ENV={env_name!r} is not one of: {', '.join(sorted(CONFIGS))}"
        ) from None


def load(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings for ``APP_ENV`` (or ``overrides["APP_ENV"]``), checked and completed.

    Raises ConfigError when they are unusable, so the app refuses to start.
    """
    overrides = dict(overrides or {})
    cls = config_class(overrides.get("APP_ENV") or os.environ.get("APP_ENV"))
    settings = cls.settings()
    settings.update(overrides)
    settings["APP_ENV"] = cls.ENV_NAME
    if cls.ENV_NAME != "development" and get_debug_flag():
        raise ConfigError("FLASK_DEBUG is set; debug mode is only allowed in development")
    finalize(settings, cls)
    return settings


def finalize(config: dict[str, Any], cls: type[Config]) -> None:
    """Check the merged config and fill what may be generated; raise ConfigError."""
    if not config.get("SECRET_KEY"):
        if cls.REQUIRE_SECRET_KEY:
            raise ConfigError(
                "SECRET_KEY is not set. Production refuses to start without one: "
                "export SECRET_KEY to a long random string "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')."
            )
        config["SECRET_KEY"] = secrets.token_hex(32)
    elif cls.REQUIRE_SECRET_KEY and len(str(config["SECRET_KEY"]).encode()) < MIN_SECRET_KEY_BYTES:
        size = len(str(config["SECRET_KEY"]).encode())
        raise ConfigError(
            f"SECRET_KEY is {size} bytes; production needs at least {MIN_SECRET_KEY_BYTES}: "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    try:
        ZoneInfo(str(config.get("LAB_TIMEZONE") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"LAB_TIMEZONE={config.get('LAB_TIMEZONE')!r} is not a time zone: use an IANA name "
            "such as Europe/London or Asia/Tehran"
        ) from None
    if config.get("DEBUG") and cls is not DevelopmentConfig:
        raise ConfigError(f"debug mode is only allowed in development, not in {cls.ENV_NAME}")


def _megabytes(raw: str | None, default: float, name: str) -> int:
    """A size in megabytes from the environment, as bytes."""
    if raw is None or raw.strip() == "":
        mb = default
    else:
        try:
            mb = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of megabytes, got {raw!r}") from None
        if not 0 < mb <= 4096:
            raise ConfigError(f"{name} must be between 0 and 4096, got {raw!r}")
    return int(mb * 1024 * 1024)


def _number(raw: str | None, default: float, name: str, allow_zero: bool = False) -> float:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be above 0, got {raw!r}")
    return value


def _flag(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")
