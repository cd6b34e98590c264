"""Back up, wipe, restore: the case, its photographs and its PDF come back identical, on
SQLite and on a real PostgreSQL (``flask backup create`` and ``flask backup restore``)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from app import create_app
from app.core.model_card import ModelCard
from app.records.cases import new_case, refresh
from app.records.schema import CaseField
from tests.support.accounts import admin_client
from tests.support.server import multipart


def make_app(config: dict[str, Any], inference_service):
    return create_app(config, inference=inference_service)


def wipe(app, config: dict[str, Any]) -> None:
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
        config["DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
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
    verified = app.test_cli_runner().invoke(args=["backup", "verify", str(folder)])
    assert verified.exit_code == 0, verified.output
    assert "is sound" in verified.output, verified.output
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
    assert done.exit_code != 0
    assert "checksum" in done.output
    again = app.test_cli_runner().invoke(args=["backup", "create", str(folder)])
    assert again.exit_code != 0
    assert "exists" in again.output


def stored_cases(app, n: int, photographs: int = 2, size: int = 300_000) -> list[str]:
    """``n`` cases written straight to the records, each with its own stored photographs
    (random bytes: the store keeps any file by its sha256); their ids."""
    rng = np.random.default_rng(0)
    ids = []
    with app.extensions["records"].sessions() as session:
        store = app.extensions["records"].store
        card = ModelCard(name="lenet", version="1.0.0", input_size=224)
        for i in range(n):
            case = new_case(session, f"KEEP-{i}", "", card, created_by="admin")
            for position in range(1, photographs + 1):
                data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
                case.fields.append(
                    CaseField(
                        position=position,
                        filename=f"{position}.jpg",
                        sha256=store.put(data),
                        size_bytes=size,
                        state="refused",
                        stored=True,
                    )
                )
            refresh(case)
            ids.append(case.public_id)
        session.commit()
    return ids


def named_but_absent(folder: Path) -> set[str]:
    """Photographs the backup's SQLite copy names that the backup does not hold."""
    with sqlite3.connect(folder / "cases.sqlite3") as connection:
        rows = connection.execute("SELECT DISTINCT sha256 FROM case_fields WHERE stored")
        named = {row[0] for row in rows}
    held = {p.name for p in (folder / "images").rglob("*") if p.is_file()}
    return named - held


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_a_photograph_missing_from_the_store_fails_the_backup_and_keeps_nothing(
    app, tmp_path: Path
) -> None:
    stored_cases(app, 2)
    lost = sorted(p for p in Path(app.config["IMAGE_STORE"]).rglob("*") if p.is_file())[0]
    lost.unlink()
    folder = tmp_path / "backup"
    made = cli(app, "backup", "create", str(folder))
    assert made.exit_code != 0, made.output
    assert "Of the 4 photographs the database names, 1 could not be copied" in made.output
    assert lost.name in made.output
    assert not folder.exists()


def test_every_file_is_in_the_manifest_and_verify_finds_what_was_changed(
    app, tmp_path: Path
) -> None:
    stored_cases(app, 2)
    folder = tmp_path / "backup"
    assert cli(app, "backup", "create", str(folder)).exit_code == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert len(files) == 6
    sound = cli(app, "backup", "verify", str(folder))
    assert sound.exit_code == 0, sound.output
    assert "is sound" in sound.output, sound.output

    photographs = sorted(p for p in (folder / "images").rglob("*") if p.is_file())
    photographs[0].write_bytes(photographs[0].read_bytes()[:-1] + b"!")  # tampered
    photographs[1].unlink()  # missing
    photographs[2].unlink()  # missing, and struck from the manifest too
    name = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    del manifest["files"][name(photographs[2])]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "images" / "stray.jpg").write_bytes(b"not listed")
    found = cli(app, "backup", "verify", str(folder))
    assert found.exit_code != 0
    assert f"{name(photographs[0])} does not match its checksum" in found.output
    assert f"{name(photographs[1])} is missing" in found.output
    assert f"the database names photograph {photographs[2].name}, which the backup lacks" in (
        found.output
    )
    assert "images/stray.jpg is not in the manifest" in found.output
    refused = cli(app, "backup", "restore", str(folder), "--yes")
    assert refused.exit_code != 0
    assert "is not sound" in refused.output


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_backup_taken_while_cases_are_deleted_holds_every_photograph_it_names(
    database: str, request, app_config, inference_service, tmp_path: Path
) -> None:
    config = dict(app_config)
    if database == "postgresql":
        config["DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
    app = make_app(config, inference_service)
    doomed, deleted = stored_cases(app, 150)[-10:], []
    folder = tmp_path / "backup"
    started = threading.Event()
    client = admin_client(app)
    assert client.get("/api/v1/cases").status_code == 200  # signed in and warm

    def delete_while_backing_up() -> None:
        # The backup has taken its database copy once it copies photographs.
        deadline = time.monotonic() + 60
        while not (folder / "images").exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        started.set()
        for case_id in doomed:
            assert client.delete(f"/api/v1/cases/{case_id}").status_code == 204
            deleted.append(case_id)

    deleter = threading.Thread(target=delete_while_backing_up)
    deleter.start()
    made = cli(app, "backup", "create", str(folder))
    deleter.join(timeout=120)
    assert started.is_set()
    assert len(deleted) == len(doomed)
    print(f"{database}: backup exit {made.exit_code}: {made.output.strip()[:200]}")
    if made.exit_code != 0:  # every attempt met a deletion: it says so, and keeps nothing
        assert "deleted while the backup ran" in made.output
        assert not folder.exists()
        return
    if database == "sqlite":
        assert named_but_absent(folder) == set()
    verified = cli(app, "backup", "verify", str(folder))
    assert verified.exit_code == 0, verified.output
    app.extensions["records"].engine.dispose()
