"""Configuration per environment, secrets, upload limit and startup failures."""

from __future__ import annotations

import pytest

from app import create_app
from app.core.errors import NoModelsError
from app.web.config import (
    DEFAULT_MODELS_DIR,
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    TestingConfig,
    config_class,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "APP_ENV",
        "SECRET_KEY",
        "MAX_UPLOAD_MB",
        "MODELS_DIR",
        "DEFAULT_MODEL",
        "FLASK_DEBUG",
        "SESSION_COOKIE_SECURE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_app_env_picks_the_config_class() -> None:
    assert config_class(None) is DevelopmentConfig
    assert config_class("") is DevelopmentConfig
    assert config_class("Production") is ProductionConfig
    assert config_class("testing") is TestingConfig
    with pytest.raises(ConfigError, match="APP_ENV"):
        config_class("staging")


def test_defaults_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = DevelopmentConfig.settings()
    assert settings["MAX_CONTENT_LENGTH"] == 50 * 1024 * 1024
    assert settings["MODELS_DIR"] == str(DEFAULT_MODELS_DIR)
    assert settings["DEFAULT_MODEL"] == "cell_lenet"
    assert settings["DEBUG"] is True
    monkeypatch.setenv("MAX_UPLOAD_MB", "2.5")
    monkeypatch.setenv("MODELS_DIR", "/somewhere/models")
    settings = ProductionConfig.settings()
    assert settings["MAX_CONTENT_LENGTH"] == int(2.5 * 1024 * 1024)
    assert settings["MODELS_DIR"] == "/somewhere/models"
    assert settings["DEBUG"] is False
    assert settings["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("raw", ["ten", "0", "-1", "5000"])
def test_bad_upload_limit_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("MAX_UPLOAD_MB", raw)
    with pytest.raises(ConfigError, match="MAX_UPLOAD_MB"):
        TestingConfig.settings()


def test_production_refuses_to_start_without_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app()


@pytest.mark.parametrize("key", ["test", "x" * 31])
def test_production_refuses_a_short_secret_key(key: str) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        create_app({"APP_ENV": "production", "SECRET_KEY": key})


def test_debug_flag_refused_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_DEBUG", "1")
    with pytest.raises(ConfigError, match="debug"):
        create_app({"APP_ENV": "production", "SECRET_KEY": "x"})
    with pytest.raises(ConfigError, match="debug"):
        create_app({"APP_ENV": "testing", "DEBUG": True})


def test_empty_models_folder_fails_with_clear_error(tmp_path) -> None:
    with pytest.raises(NoModelsError, match="no models in"):
        create_app({"APP_ENV": "testing", "MODELS_DIR": str(tmp_path)})


def test_development_generates_a_secret_key(models_dir, inference_service) -> None:
    first = create_app({"MODELS_DIR": str(models_dir)}, inference=inference_service)
    second = create_app({"MODELS_DIR": str(models_dir)}, inference=inference_service)
    assert first.config["APP_ENV"] == "development"
    assert first.debug is True
    assert len(first.config["SECRET_KEY"]) >= 32
    assert first.config["SECRET_KEY"] != second.config["SECRET_KEY"]


def test_testing_config(app) -> None:
    assert app.config["TESTING"] is True
    assert app.debug is False
    assert app.config["DEFAULT_MODEL"] == "lenet"


def test_production_uses_secret_key_and_secure_cookies(
    monkeypatch: pytest.MonkeyPatch, models_dir, inference_service
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s3cret-from-env-and-long-enough-for-production")
    prod = create_app({"MODELS_DIR": str(models_dir)}, inference=inference_service)
    assert prod.debug is False
    assert prod.config["SECRET_KEY"] == "s3cret-from-env-and-long-enough-for-production"
    response = prod.test_client().get("/login", base_url="https://localhost")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "max-age=" in response.headers["Strict-Transport-Security"]


def test_secure_cookie_can_be_relaxed_for_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "0")
    assert ProductionConfig.settings()["SESSION_COOKIE_SECURE"] is False
