"""The records tests' databases: each test runs on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.records.database import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (no schema yet), for tests of the migrations themselves."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from _engine_for(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_engine(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path
) -> Iterator[Engine]:
    """A database at the newest schema: a copy of one migrated once a session."""
    if request.param == "sqlite":
        path = tmp_path / "cases.sqlite3"
        shutil.copyfile(migrated_sqlite, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    yield from _engine_for(url)


def _engine_for(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()
