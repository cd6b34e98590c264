"""Back up, wipe, restore: the case, its photographs and its PDF come back identical, on
SQLite and on a real PostgreSQL (``flask backup create`` and ``flask backup restore``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from app import create_app
from tests.support.accounts import admin_client
from tests.support.server import multipart


def make_app(config: dict, inference_service):
    return create_app(config, inference=inference_service)


def wipe(app, config: dict) -> None:
    """Everything gone: the database's tables (or file) and the photographs."""
    engine = app.extensions["records"].engine
    if config["DATABASE_URL"].startswith("sqlite"):
        engine.dispose()
        Path(config["DATABASE_URL"].removeprefix("sqlite:///")).unlink()
    else:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    shutil.rmtree(config["IMAGE_STORE"])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_back_up_wipe_restore(
    database: str, request, app_config, inference_service, images, tmp_path: Path
) -> None:
    config = dict(app_config)
    if database == "postgresql":
        config["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    app = make_app(config, inference_service)
    client = admin_client(app)
    files = [("images", (f"{i}.png", images.make(size=(160, 160), seed=i))) for i in range(2)]
    body, content_type = multipart({"reference": "BACKUP-1"}, files)
    case = client.post("/api/v1/cases", data=body, content_type=content_type).get_json()
    url = f"/api/v1/cases/{case['id']}"
    client.post(url + "/review", json={"decision": "override", "class": "pre_b", "sign_off": True})
    before = client.get(url).get_json()
    pdf = client.get(url + "/report.pdf").data
    assert client.get(url + "/report.pdf").data == pdf  # the same record, the same bytes
    picture = client.get(f"/cases/{case['id']}/fields/1/field.jpg").data

    folder = tmp_path / "backup"
    made = app.test_cli_runner().invoke(args=["backup", "create", str(folder)])
    assert made.exit_code == 0, made.output
    assert "2 photographs" in made.output
    wipe(app, config)

    restored_app = make_app(config, inference_service)  # an empty, new database
    assert admin_client(restored_app).get(url).status_code == 404
    restored_app.extensions["records"].engine.dispose()
    done = restored_app.test_cli_runner().invoke(args=["backup", "restore", str(folder), "--yes"])
    assert done.exit_code == 0, done.output
    restored_app.extensions["records"].engine.dispose()

    again = make_app(config, inference_service)
    client = admin_client(again)
    assert client.get(url).get_json() == before
    assert client.get(url + "/report.pdf").data == pdf
    assert client.get(f"/cases/{case['id']}/fields/1/field.jpg").data == picture
    with again.extensions["records"].engine.connect() as connection:
        rows = connection.execute(text("SELECT action FROM audit_events ORDER BY id"))
        actions = [row[0] for row in rows]
    # The restored trail is the backup's, then the restore, then what was done since.
    restored = actions.index("backup_restored")
    assert "case_signed_off" in actions[:restored]
    assert actions[restored + 1 :] == ["case_viewed", "report_exported"]
    again.extensions["records"].engine.dispose()


def test_a_damaged_backup_is_refused(app, tmp_path: Path) -> None:
    folder = tmp_path / "backup"
    assert app.test_cli_runner().invoke(args=["backup", "create", str(folder)]).exit_code == 0
    with (folder / "cases.sqlite3").open("ab") as f:
        f.write(b"damage")
    done = app.test_cli_runner().invoke(args=["backup", "restore", str(folder), "--yes"])
    assert done.exit_code != 0 and "checksum" in done.output
    again = app.test_cli_runner().invoke(args=["backup", "create", str(folder)])
    assert again.exit_code != 0 and "exists" in again.output
