"""The SQL an app sends, for tests that count its queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import event


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL the app sends while inside."""
    sent: list[str] = []
    engine = app.extensions["records"].engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
