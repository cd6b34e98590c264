"""A case's new cell crops written in one INSERT with their fields, not as ORM objects.

``add_field`` hands a new field's crops here as rows; when the session flushes the field
(at the commit, or a retry's flush after a rollback), they are inserted in the same
transaction with its id, all the flush's fields' crops in one statement. The crops never
enter the session's identity map; they are read back like any other stored crop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker

from app.records.schema import CaseField, CellCrop

_UNWRITTEN = "unwritten_cells"
# Every row has every column, so the whole flush's crops are one executemany.
_COLUMNS = ("index", "box", "image", "class_id", "probabilities", "attention", "status")


def hold_cells(session: Session, item: CaseField, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (CellCrop columns but ``field_id``) when ``item`` is inserted."""
    if rows:
        unwritten: dict[CaseField, list[dict[str, Any]]] = session.info.setdefault(_UNWRITTEN, {})
        unwritten[item] = [{c: row.get(c) for c in _COLUMNS} for row in rows]


def write_cells_on_flush(sessions: sessionmaker[Session]) -> None:
    """Make the sessions of ``sessions`` insert held crops with their fields."""
    event.listen(sessions, "after_flush", _insert_held)
    event.listen(sessions, "after_commit", _forget_held)


def _insert_held(session: Session, flush: UOWTransaction) -> None:
    unwritten: dict[CaseField, list[dict[str, Any]]] = session.info.get(_UNWRITTEN, {})
    if not unwritten:
        return
    # ``session.new`` still lists what this flush inserted; a field re-added after a
    # rollback is inserted again, so its crops are too.
    rows = [
        {**row, "field_id": item.id}
        for item in session.new
        if isinstance(item, CaseField) and item in unwritten
        for row in unwritten[item]
    ]
    if rows:
        session.connection().execute(insert(CellCrop), rows)


def _forget_held(session: Session) -> None:
    session.info.pop(_UNWRITTEN, None)
