"""The database: engine, schema migrations at start, and sessions.

SQLite by default (a file, nothing to install); PostgreSQL when ``DATABASE_URL``
says so (``postgresql+psycopg://...``). ``upgrade`` brings any database to the
newest schema with Alembic; several processes starting at once take turns.
"""

from __future__ import annotations

import fcntl
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.records.cell_writes import write_cells_on_flush
from app.records.json_columns import json_text, json_value

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed number: the PostgreSQL advisory lock that serialises migrations.
_MIGRATION_LOCK = 74_213_901


class DatabaseError(RuntimeError):
    """The database cannot be reached or its schema is newer than this code."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# The JSON columns' text (``app.records.json_columns``).
JSON_COLUMNS: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": json_value}


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, a write-ahead log and a busy wait."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **JSON_COLUMNS)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **JSON_COLUMNS)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic's configuration: the migrations folder, and the engine to run them on."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision of the migrations shipped with this code: read once a process
    (Alembic parses every migration script to find it)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str | None:
    """Create or upgrade the schema to the newest revision; returns it."""
    try:
        with _migration_lock(engine):
            if current_revision(engine) != head_revision():
                command.upgrade(alembic_config(engine), "head")
            return current_revision(engine)
    except Exception as exc:
        raise DatabaseError(f"could not bring the database to the current schema: {exc}") from exc


def require_current(engine: Engine) -> str | None:
    """The schema's revision, when it is the newest (an app that does not migrate itself
    connects as a role that could not); else DatabaseError saying what to run."""
    try:
        found, wanted = current_revision(engine), head_revision()
    except Exception as exc:
        raise DatabaseError(f"could not read the database's schema revision: {exc}") from exc
    if found != wanted:
        raise DatabaseError(
            f"the database is at schema revision {found or 'none'}, this version needs "
            f"{wanted}: run the migrations as the database's owner (python -m app.records.migrate)"
        )
    return found


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time: a lock file beside SQLite, an advisory lock on
    PostgreSQL."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
            connection.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    sessions = sessionmaker(engine, expire_on_commit=False)
    write_cells_on_flush(sessions)
    return sessions
