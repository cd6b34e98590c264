"""The compose bundle: valid against the Compose specification's schema (compose-spec
commit 170098b, tests/support/compose-spec.json) once interpolated as ``docker compose``
does, and holding what a lab server needs. No container engine runs here: the images
themselves are not started (the README says so)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.models import ROOT

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "support" / "compose-spec.json"
TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"
VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()]
    return {
        k.strip(): v.strip()
        for k, v in (p for p in pairs if len(p) == 2 and not p[0].startswith("#"))
    }


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``; ``$$`` is a ``$``."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return VARIABLE.sub(value, text).replace("$$", "$")


def bundle(env: dict[str, str]) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


@pytest.fixture()
def filled() -> dict[str, str]:
    return {**env_example(), "SECRET_KEY": "k" * 64, "POSTGRES_PASSWORD": "p" * 32}


def test_the_bundle_is_valid_compose(filled: dict[str, str]) -> None:
    # The schema names draft 7 without the "#" jsonschema looks for: say so explicitly.
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    validator.validate(bundle(filled))
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        validator.validate({"services": {"app": {"restart": 3}}})


def test_the_secrets_must_be_set(filled: dict[str, str]) -> None:
    for secret in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        with pytest.raises(KeyError, match=secret):
            bundle({**filled, secret: ""})
    assert env_example()["SECRET_KEY"] == "" and env_example()["POSTGRES_PASSWORD"] == ""


def test_every_variable_is_in_the_example_env() -> None:
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text())}
    assert used <= set(env_example()), used - set(env_example())


def test_every_service_has_a_health_check_a_restart_policy_and_a_memory_limit(filled) -> None:
    services = bundle(filled)["services"]
    assert set(services) == {"app", "db", "proxy"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
        assert re.fullmatch(r"\d+[mg]", service["mem_limit"]), name


def test_only_the_proxy_is_reachable_and_the_data_lives_in_named_volumes(filled) -> None:
    data = bundle(filled)
    services, networks = data["services"], data["networks"]
    assert networks["internal"]["internal"] is True
    assert "ports" not in services["app"] and "ports" not in services["db"]
    assert services["app"]["networks"] == ["internal"] and services["db"]["networks"] == [
        "internal"
    ]
    assert sorted(services["proxy"]["networks"]) == ["internal", "public"]
    assert "db:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert "images:/data" in services["app"]["volumes"]
    assert {"db", "images", "tls"} <= set(data["volumes"])
    app_env = services["app"]["environment"]
    assert app_env["DATABASE_URL"].startswith("postgresql+psycopg://ball:")
    assert app_env["APP_ENV"] == "production" and app_env["TRUSTED_PROXIES"] == "1"
    # Metrics stay on the internal network: the proxy answers 404 for them.
    assert re.search(r"location = /metrics \{\s*return 404;", TEMPLATE.read_text())


def test_the_proxy_is_given_every_variable_its_template_uses(filled) -> None:
    wanted = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    given = set(bundle(filled)["services"]["proxy"]["environment"])
    assert wanted <= given, wanted - given


def test_the_first_start_makes_a_self_signed_certificate_once(tmp_path: Path) -> None:
    script = ROOT / "deploy" / "nginx" / "self-signed.sh"
    env = {
        "PATH": "/usr/bin:/bin",
        "TLS_CERT": str(tmp_path / "tls" / "tls.crt"),
        "TLS_KEY": str(tmp_path / "tls" / "tls.key"),
        "TLS_HOSTNAME": "haem-lab.example",
    }
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)
    cert = tmp_path / "tls" / "tls.crt"
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "haem-lab.example" in subject
    made = cert.read_bytes()
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)
    assert cert.read_bytes() == made  # the lab's own certificate, or the first, is kept
    assert (tmp_path / "tls" / "tls.key").stat().st_mode & 0o077 == 0
