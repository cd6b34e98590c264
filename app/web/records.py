"""The app's case records: the database session of a request and the image store.

The schema is brought up to date when the app starts (``create_app``), so a fresh
checkout, ``flask run`` and a new container need no separate step; with
``MIGRATE_ON_START=0`` (the app's database role may not change the schema) it must already
be current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import RequestRefusedError
from app.records.database import (
    make_engine,
    require_current,
    session_factory,
    sqlite_url,
    upgrade,
)
from app.records.image_store import ImageStore

_RECORDS = "records"
DATABASE_FILE = "cases.sqlite3"


@dataclass(frozen=True)
class Records:
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore | None


def init_app(app: Flask) -> None:
    """Connect to DATABASE_URL (default: SQLite in the instance folder) and migrate it,
    or check that its owner has (``MIGRATE_ON_START`` off)."""
    instance = Path(app.instance_path)
    url = app.config.get("DATABASE_URL") or sqlite_url(instance / DATABASE_FILE)
    app.config["DATABASE_URL"] = url
    engine = make_engine(url)
    if app.config.get("MIGRATE_ON_START", True):
        upgrade(engine)
    else:
        require_current(engine)
    store = None
    if app.config.get("STORE_IMAGES", True):
        root = app.config.get("IMAGE_STORE") or instance / "images"
        app.config["IMAGE_STORE"] = str(root)
        store = ImageStore(root)
    sessions = session_factory(engine)
    event.listen(sessions, "before_commit", _run_commit_actions)
    app.extensions[_RECORDS] = Records(engine, sessions, store)
    app.teardown_appcontext(_close_session)


def db() -> Session:
    """This request's session; rolled back and closed when the request ends."""
    if "db_session" not in g:
        records: Records = current_app.extensions[_RECORDS]
        g.db_session = records.sessions()
    session: Session = g.db_session
    return session


@contextmanager
def reading() -> Iterator[Connection]:
    """A connection for a read outside this request's session: a request that only reads
    opens no session, so it has no transaction to roll back."""
    records: Records = current_app.extensions[_RECORDS]
    with records.engine.connect() as connection:
        yield connection


def on_commit(action: Callable[[Session], None]) -> None:
    """Run ``action`` in this request's session just before it commits, if it ever does
    (a bookkeeping write a read-only request should not make)."""
    g.setdefault("commit_actions", []).append(action)


def _run_commit_actions(session: Session) -> None:
    # Sessions are made outside requests too (commands, tests): only the request's counts.
    if has_app_context() and session is g.get("db_session"):
        for action in g.pop("commit_actions", []):
            action(session)


class ConcurrentChangeError(RequestRefusedError):
    """Another request changed the same records first (e.g. two uploads to one case)."""

    status = 409
    code = "concurrent_change"


CONCURRENT_CHANGE = "Another request changed the same record first; send this again."


@contextmanager
def clashes_reported(clash: str) -> Iterator[None]:
    """Inside, a change another request made first (a unique index refusing the row, at a
    flush or at the commit) becomes a 409 saying ``clash``."""
    try:
        yield
    except IntegrityError:
        db().rollback()
        raise ConcurrentChangeError(clash) from None


def commit() -> None:
    """Commit this request's changes; a clash with another request's is a 409, not a 500."""
    with clashes_reported(CONCURRENT_CHANGE):
        db().commit()


def image_store() -> ImageStore | None:
    records: Records = current_app.extensions[_RECORDS]
    return records.store


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.rollback()  # anything not committed by the view is dropped
        session.close()
