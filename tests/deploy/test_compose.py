"""The compose bundle: valid against the Compose specification's schema (compose-spec
commit 170098b, tests/support/compose-spec.json) once interpolated as ``docker compose``
does, and holding what a lab server needs. No container engine runs here: the images
themselves are not started (the README says so)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.records.database import make_engine
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


@pytest.fixture
def filled() -> dict[str, str]:
    return {
        **env_example(),
        "SECRET_KEY": "k" * 64,
        "POSTGRES_PASSWORD": "p" * 32,
        "APP_DB_PASSWORD": "a" * 32,
    }


def test_the_bundle_is_valid_compose(filled: dict[str, str]) -> None:
    # The schema names draft 7 without the "#" jsonschema looks for: say so explicitly.
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    validator.validate(bundle(filled))
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        validator.validate({"services": {"app": {"restart": 3}}})


def test_the_secrets_must_be_set(filled: dict[str, str]) -> None:
    secrets = ("SECRET_KEY", "POSTGRES_PASSWORD", "APP_DB_PASSWORD")
    for secret in secrets:
        with pytest.raises(KeyError, match=secret):
            bundle({**filled, secret: ""})
    assert [env_example()[secret] for secret in secrets] == ["", "", ""]


def test_every_variable_is_in_the_example_env() -> None:
    used = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text())}
    assert used <= set(env_example()), used - set(env_example())


def test_every_service_has_a_health_check_a_restart_policy_and_a_memory_limit(filled) -> None:
    services = bundle(filled)["services"]
    assert set(services) == {"migrate", "app", "db", "proxy"}
    for name, service in services.items():
        assert re.fullmatch(r"\d+[mg]", service["mem_limit"]), name
        if name == "migrate":  # a job that runs once: it has nothing to keep healthy
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name


def test_only_the_proxy_is_reachable_and_the_data_lives_in_named_volumes(filled) -> None:
    data = bundle(filled)
    services, networks = data["services"], data["networks"]
    assert networks["internal"]["internal"] is True
    for name in ("migrate", "app", "db"):
        assert "ports" not in services[name]
        assert services[name]["networks"] == ["internal"]
    assert sorted(services["proxy"]["networks"]) == ["internal", "public"]
    assert "db:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert "images:/data" in services["app"]["volumes"]
    assert {"db", "images", "tls"} <= set(data["volumes"])
    app_env = services["app"]["environment"]
    assert app_env["DATABASE_URL"].startswith("postgresql+psycopg://ball_app:")
    assert app_env["APP_ENV"] == "production"
    assert app_env["TRUSTED_PROXIES"] == "1"
    # Metrics stay on the internal network: the proxy answers 404 for them.
    assert re.search(r"location = /metrics \{\s*return 404;", TEMPLATE.read_text())


def test_the_app_connects_as_its_own_role_after_the_owner_migrates(filled) -> None:
    services = bundle(filled)["services"]
    app, job = services["app"], services["migrate"]
    owner = make_url(job["environment"]["DATABASE_URL"])
    served = make_url(app["environment"]["DATABASE_URL"])
    assert owner.username == services["db"]["environment"]["POSTGRES_USER"]
    assert served.username == job["environment"]["APP_DATABASE_USER"] != owner.username
    assert served.password == job["environment"]["APP_DATABASE_PASSWORD"]
    assert (served.host, served.database) == (owner.host, owner.database)
    assert job["command"] == ["python", "-m", "app.records.migrate"]
    assert app["environment"]["MIGRATE_ON_START"] == "0"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert filled["POSTGRES_PASSWORD"] not in yaml.safe_dump(app)  # the owner's stays out


def test_the_bundles_roles_hold_on_a_real_postgresql(filled, postgres_url: str) -> None:
    """The migrate job's command and environment run against a real server standing in for
    the db container, whose user ``ball`` is a superuser as the postgres image makes it;
    then the app's connection cannot erase the audit trail or take its triggers away."""
    services = bundle(filled)["services"]
    server = make_url(postgres_url)

    def on_test_server(url: str) -> str:
        moved = make_url(url).set(host=None, port=None, database=server.database)
        return moved.set(query=server.query).render_as_string(hide_password=False)

    admin = make_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text("DROP ROLE IF EXISTS ball_app"))
        connection.execute(text("DROP ROLE IF EXISTS ball"))
        connection.execute(text("CREATE ROLE ball SUPERUSER LOGIN"))
    job = services["migrate"]
    env = {**job["environment"], "PATH": os.environ["PATH"]}
    env["DATABASE_URL"] = on_test_server(env["DATABASE_URL"])
    ran = subprocess.run(
        [sys.executable, *job["command"][1:]], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    served = make_engine(on_test_server(services["app"]["environment"]["DATABASE_URL"]))
    for statement in ("TRUNCATE audit_events", "ALTER TABLE audit_events DISABLE TRIGGER USER"):
        with pytest.raises(DBAPIError, match="InsufficientPrivilege"), served.begin() as c:
            c.execute(text(statement))
    with served.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar() == 0
    served.dispose()
    with admin.begin() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        )
        assert set(owners.scalars()) == {"ball"}
        connection.execute(text("REASSIGN OWNED BY ball TO postgres"))
        connection.execute(text("DROP OWNED BY ball_app"))
    admin.dispose()


def test_the_proxy_is_given_every_variable_its_template_uses(filled) -> None:
    wanted = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    given = set(bundle(filled)["services"]["proxy"]["environment"])
    assert wanted <= given, wanted - given


def test_the_proxy_writes_bodies_and_responses_to_memory_and_redirects_to_the_https_port(
    filled,
) -> None:
    proxy = bundle({**filled, "HTTPS_PORT": "8443"})["services"]["proxy"]
    mounts = {entry.split(":", 1)[0] for entry in proxy["tmpfs"]}
    # nginx's image keeps its request-body and response temporary files here.
    assert {"/var/cache/nginx/client_temp", "/var/cache/nginx/proxy_temp"} <= mounts
    assert proxy["environment"]["PUBLIC_HTTPS_PORT"] == "8443"
    assert "8443:443" in proxy["ports"]


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
