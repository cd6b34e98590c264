"""Shared fixtures: the real models (loaded once per session), the app, its client, images.

Tests live in folders by kind: ``unit`` (no trained model), ``web`` (the Flask
app on the real models), ``model`` (the trained models and training itself),
``deploy`` (a real gunicorn), ``e2e`` (a real browser). Models come from
MODELS_DIR when it holds models, else from <project root>/models; with neither,
tests that need them skip. Real smear images come from ALL_DATA_DIR (tests
marked ``data`` skip without it); other images are synthesised in memory.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.core.service import InferenceService
from tests.support.accounts import signed_in, token_for, with_token
from tests.support.images import CLASS_FOLDERS, ImageFactory
from tests.support.models import DATA_ENV, ROOT, data_root, find_models_dir

CLASS_IDS_BY_FOLDER = dict(
    zip(CLASS_FOLDERS, ("benign", "early_pre_b", "pre_b", "pro_b"), strict=True)
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if data_root() is not None:
        return
    skip = pytest.mark.skip(reason=f"{DATA_ENV} is not set: export it to the data set folder")
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadgroup``, tests that share a module's fixtures, and the browser
    tests, each keep to one worker (tests/support/xdist_groups.py)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.support.xdist_groups import SharedFixtureScheduling

    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    found = find_models_dir()
    if found is None:
        pytest.skip(
            f"no trained models: {ROOT / 'models'} is empty and MODELS_DIR is unset "
            "or empty (point MODELS_DIR at a folder of <name>.keras + <name>.json)"
        )
    return found


@pytest.fixture(scope="session")
def inference_service(models_dir: Path) -> InferenceService:
    """Every model loaded and warmed up once for the whole session."""
    return InferenceService(models_dir).load()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the newest schema, migrated once a session (or xdist worker)."""
    from app.records.database import make_engine, sqlite_url, upgrade

    path = tmp_path_factory.mktemp("template") / "cases.sqlite3"
    engine = make_engine(sqlite_url(path))
    upgrade(engine)
    engine.dispose()  # the last connection checkpoints the write-ahead log into the file
    return path


@pytest.fixture(autouse=True)
def isolated_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app a test builds keeps its cases under tmp_path, never in the project."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'records' / 'cases.sqlite3'}")
    monkeypatch.setenv("IMAGE_STORE", str(tmp_path / "records" / "images"))


@pytest.fixture
def app_config(models_dir: Path, tmp_path: Path, migrated_sqlite: Path) -> dict[str, object]:
    """The test app's settings: its own SQLite database and image store under tmp_path. The
    database is a copy of one migrated once, so the app's start-up migration has nothing to do."""
    records = tmp_path / "records"
    records.mkdir(exist_ok=True)
    shutil.copyfile(migrated_sqlite, records / "cases.sqlite3")
    return {
        "APP_ENV": "testing",
        "MODELS_DIR": str(models_dir),
        # The session's service serves LeNet-5 by default; the cell default is tested
        # on its own app (tests/web/test_cell_default.py).
        "DEFAULT_MODEL": "lenet",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": f"sqlite:///{records / 'cases.sqlite3'}",
        "IMAGE_STORE": str(records / "images"),
    }


@pytest.fixture
def app(app_config: dict[str, object], inference_service: InferenceService) -> Iterator[Flask]:
    app = create_app(app_config, inference=inference_service)
    yield app
    app.extensions["records"].engine.dispose()  # no connection outlives its test


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session; its URL without a database name."""
    from tests.support.postgres import binaries, running_postgres

    if binaries() is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped after the test."""
    from tests.support.postgres import fresh_database

    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> str:
    """A database at the newest schema, migrated once a session (or xdist worker)."""
    from tests.support.postgres import migrated_template

    return migrated_template(postgres_server)


@pytest.fixture
def migrated_postgres_url(postgres_server: str, postgres_template: str) -> Iterator[str]:
    """A fresh database at the newest schema (a copy of the template), dropped after the test:
    for an app, whose start-up migration then has nothing to do."""
    from tests.support.postgres import fresh_database

    with fresh_database(postgres_server, template=postgres_template) as url:
        yield url


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Signed in as the test admin (every permission), with an admin API token for /api.
    Tests of who may do what use ``anonymous`` and ``as_role``."""
    client = signed_in(app.test_client(), "admin")
    return with_token(client, token_for(app, "admin"))


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def as_role(app: Flask) -> Callable[[str], FlaskClient]:
    """A client signed in as the role's test user, with that user's API token."""

    def make(role: str) -> FlaskClient:
        return with_token(signed_in(app.test_client(), role), token_for(app, role))

    return make


@pytest.fixture
def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of a fresh upload page (its session cookie stays in ``client``)."""
    page = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "upload page has no CSRF token"
    return match.group(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if root is None:
        pytest.skip(f"{DATA_ENV} is not set: export it to the data set folder")
    if not root.is_dir():
        pytest.skip(f"{DATA_ENV}={root} is not a folder")
    return root


@pytest.fixture(scope="session")
def smear_images(data_dir: Path) -> dict[str, list[Path]]:
    """A few real smear images per class id (first files by name, so runs are stable)."""
    found = {}
    for folder, class_id in CLASS_IDS_BY_FOLDER.items():
        files = sorted((data_dir / folder).glob("*.jpg"))[:3]
        if not files:
            pytest.skip(f"no images in {data_dir / folder}")
        found[class_id] = files
    return found


@pytest.fixture(scope="session")
def images() -> ImageFactory:
    return ImageFactory()


@pytest.fixture
def no_new_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails the test if anything is written to the working directory or the temp dir.

    Both are pointed at fresh empty folders (other processes share the real ones).
    """
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield
    for folder in (work, temp):
        written = sorted(p.name for p in folder.iterdir())
        assert not written, f"files were written to {folder}: {written}"
