"""``flask users ...`` and ``flask tokens ...``: the exact interface scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from app.records import accounts
from app.records.schema import AuditEvent
from tests.support.models import ROOT


@pytest.fixture
def app(app_config: dict[str, object]) -> Iterator[Flask]:
    """The app as a ``flask`` command makes it: its models never load (nothing here predicts)."""
    app = create_app(app_config)
    yield app
    assert app.extensions["model_warmup"].state == "cold"
    app.extensions["records"].engine.dispose()


def run(app: Flask, *args: str, stdin: str | None = None):
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def audit_actions(app: Flask) -> list[tuple[str, str | None, str | None]]:
    with app.extensions["records"].sessions() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.actor, e.object_id) for e in rows]


def user(app: Flask, name: str):
    with app.extensions["records"].sessions() as session:
        found = accounts.find_user(session, name)
        if found is not None:
            session.expunge(found)
        return found


def test_users_create_reads_the_password_from_stdin(app: Flask) -> None:
    result = run(app, "users", "create", "Alice", "--role", "clinician", stdin="a long password\n")
    assert result.exit_code == 0, result.output
    made = user(app, "alice")
    assert made is not None
    assert made.role == "clinician"
    assert made.active
    assert not made.must_change_password
    with app.extensions["records"].sessions() as session:
        assert accounts.authenticate(session, "alice", "a long password").username == "alice"
    [(action, actor, target)] = audit_actions(app)
    assert action == "user_created"
    assert target == "alice"
    assert actor is not None
    assert actor.startswith("cli:")


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (("users", "create", "bob", "--role", "viewer"), "short\n", "at least 12"),
        (("users", "create", "b", "--role", "viewer"), "a long password\n", "username"),
        (("users", "create", "bob", "--role", "root"), "a long password\n", "root"),
        (("users", "disable", "nobody"), None, "no user"),
        (("tokens", "create", "nobody"), None, "no user"),
        (("tokens", "revoke", "0123456789ab"), None, "no API token"),
        (("tokens", "list", "nobody"), None, "no user"),
    ],
)
def test_mistakes_exit_non_zero_and_say_why(app: Flask, args, stdin, says: str) -> None:
    result = run(app, *args, stdin=stdin)
    assert result.exit_code != 0
    assert says in result.output
    assert audit_actions(app) == []


def test_a_second_user_of_the_same_name_is_refused(app: Flask) -> None:
    run(app, "users", "create", "carol", "--role", "viewer", stdin="a long password\n")
    again = run(app, "users", "create", "Carol", "--role", "admin", stdin="a long password\n")
    assert again.exit_code != 0
    assert "already exists" in again.output


def test_disable_set_password_and_tokens(app: Flask) -> None:
    client = app.test_client()
    run(app, "users", "create", "dave", "--role", "viewer", stdin="first password!\n")
    created = run(app, "tokens", "create", "dave")
    assert created.exit_code == 0
    token = created.output.strip().splitlines()[-1]
    assert accounts.TOKEN.match(token)
    public_id = token.split("_")[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/cases", headers=headers).status_code == 200
    listed = run(app, "tokens", "list", "dave").output
    assert public_id in listed
    assert token.split("_", 2)[2] not in listed

    assert run(app, "users", "set-password", "dave", stdin="second password!\n").exit_code == 0
    with app.extensions["records"].sessions() as session:
        accounts.authenticate(session, "dave", "second password!")

    assert run(app, "users", "disable", "dave").exit_code == 0
    assert client.get("/api/v1/cases", headers=headers).status_code == 401
    assert "disabled" in run(app, "users", "list").output
    assert run(app, "users", "enable", "dave").exit_code == 0
    assert client.get("/api/v1/cases", headers=headers).status_code == 200

    assert run(app, "tokens", "revoke", public_id).exit_code == 0
    assert client.get("/api/v1/cases", headers=headers).status_code == 401
    assert [a for a, _, _ in audit_actions(app)] == [
        "user_created",
        "token_created",
        "password_changed",
        "user_disabled",
        "user_enabled",
        "token_revoked",
    ]


def test_the_real_flask_command_creates_a_user_and_prints_the_token_last(
    tmp_path: Path, models_dir: Path
) -> None:
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "MODELS_DIR": str(models_dir),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cases.sqlite3'}",
        "IMAGE_STORE": str(tmp_path / "images"),
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    created = subprocess.run(
        [*flask, "users", "create", "erin", "--role", "admin"],
        input="a long password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert created.returncode == 0, created.stderr[-2000:]
    token = subprocess.run(
        [*flask, "tokens", "create", "erin"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert token.returncode == 0, token.stderr[-2000:]
    assert accounts.TOKEN.match(token.stdout.splitlines()[-1])
    # Production has no default account: only the one made here.
    assert "password:" not in created.stderr


def test_development_makes_a_first_admin_once_and_production_never(
    app_config, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.accounts import form_token

    # Signing in would start the models' warm-up, which this test has no use for.
    development = {**app_config, "APP_ENV": "development", "WARM_UP_ON_FIRST_REQUEST": False}
    dev = create_app(development)
    printed = capsys.readouterr().err
    password = printed.split("password: ")[1].split()[0]
    client = dev.test_client()
    page = client.get("/login").get_data(as_text=True)
    signed = client.post(
        "/login", data={"username": "admin", "password": password, "csrf_token": form_token(page)}
    )
    assert signed.headers["Location"] == "/account/password"  # the password works once
    create_app(development)
    assert "password:" not in capsys.readouterr().err
    dev.extensions["records"].engine.dispose()


def test_production_starts_with_no_account(
    app_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        **app_config,
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    }
    prod = create_app(config)
    with prod.extensions["records"].sessions() as session:
        assert not accounts.any_user(session)
    assert "password:" not in capsys.readouterr().err
    prod.extensions["records"].engine.dispose()


def test_a_users_full_name_is_given_at_creation_or_later_and_listed(app: Flask) -> None:
    made = run(
        app,
        "users",
        "create",
        "sara",
        "--role",
        "clinician",
        "--name",
        "Dr Sara  Ahmadi",
        stdin="a long password\n",
    )
    assert made.exit_code == 0, made.output
    assert user(app, "sara").display_name == "Dr Sara Ahmadi"
    renamed = run(app, "users", "set-name", "sara", "Sara Ahmadi, MD")
    assert renamed.exit_code == 0
    assert user(app, "sara").display_name == "Sara Ahmadi, MD"
    assert "sara\tclinician\tactive\tSara Ahmadi, MD" in run(app, "users", "list").output
    action, actor, target = audit_actions(app)[-1]
    assert action == "user_renamed"
    assert target == "sara"
    assert actor is not None
    assert actor.startswith("cli:")
    refused = run(app, "users", "set-name", "sara", "x" * 200)
    assert refused.exit_code != 0
    assert "at most 128" in refused.output


@pytest.mark.parametrize("command", [("users", "list"), ("audit", "verify"), ("backup", "--help")])
def test_a_flask_command_loads_no_model_and_no_image_analysis(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    # The real ``flask --app wsgi ...``; what it imported is read when the interpreter exits.
    # SciPy and scikit-image (the analysis of photographs) and fpdf2 (the report) cost
    # about a second a command.
    code = (
        "import atexit, json, sys; from flask.cli import main; "
        "atexit.register(lambda: print(json.dumps("
        "[m for m in ('tensorflow', 'keras', 'scipy', 'skimage', 'fpdf') if m in sys.modules]))); "
        f"sys.argv = ['flask', '--app', 'wsgi', *{list(command)!r}]; main()"
    )
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cases.sqlite3'}",
        "IMAGE_STORE": str(tmp_path / "images"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
