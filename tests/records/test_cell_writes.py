"""A case's cell crops written in one INSERT with their fields, on SQLite and PostgreSQL:
nothing before the flush, every crop after one commit, none after a rollback, again after a
retry, and no crop in the session's identity map."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.model_card import ModelCard
from app.records.cases import new_case
from app.records.cell_writes import hold_cells
from app.records.database import session_factory
from app.records.schema import Case, CaseField, CellCrop

CARD = ModelCard(name="lenet", version="1", input_size=224)


def _field(session: Session, case: Case, position: int, n_cells: int) -> CaseField:
    """A field as ``add_field`` leaves it: in the case, its crops held, not yet written."""
    item = CaseField(position=position, sha256=f"{position:064d}", size_bytes=1, state="answered")
    case.fields.append(item)
    rows: list[dict[str, Any]] = [
        {"index": i, "box": [0, 0, i, i], "image": bytes([i]) * 10} for i in range(1, n_cells + 1)
    ]
    hold_cells(session, item, rows)
    return item


def _crops(engine: Engine) -> list[tuple[int, int, list[int], bytes]]:
    with session_factory(engine)() as session:
        rows = session.execute(
            select(CaseField.position, CellCrop.index, CellCrop.box, CellCrop.image)
            .join(CaseField, CellCrop.field_id == CaseField.id)
            .order_by(CaseField.position, CellCrop.index)
        )
        return [(int(p), int(i), list(b), bytes(im)) for p, i, b, im in rows]


def _inserts(engine: Engine, table: str) -> list[str]:
    """Collects each INSERT statement into ``table`` sent on ``engine`` (an executemany, or
    a batch of rows in one statement, is one)."""
    sent: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith(f"INSERT INTO {table} "):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return sent


def test_a_cases_crops_go_in_one_insert_at_the_commit(migrated_engine: Engine) -> None:
    sent = _inserts(migrated_engine, "cell_crops")
    with session_factory(migrated_engine)() as session:
        case = new_case(session, "W-1", "", CARD)
        for position in range(1, 6):
            _field(session, case, position, n_cells=position % 3)  # some fields have none
        assert sent == []  # nothing written until the case is
        session.commit()
        assert not any(isinstance(o, CellCrop) for o in session.identity_map.values())
    assert len(sent) == 1
    crops = _crops(migrated_engine)
    assert [(p, i) for p, i, _, _ in crops] == [(1, 1), (2, 1), (2, 2), (4, 1), (5, 1), (5, 2)]
    assert crops[2][2:] == ([0, 0, 2, 2], b"\x02" * 10)


def test_a_clash_leaves_no_crop_and_the_retry_writes_them(migrated_engine: Engine) -> None:
    sessions = session_factory(migrated_engine)
    with sessions() as session:
        public_id = new_case(session, "W-2", "", CARD).public_id
        session.commit()
    with sessions() as session:
        case = session.scalars(select(Case).where(Case.public_id == public_id)).one()
        fields = [_field(session, case, p, n_cells=2) for p in (1, 2)]
        with sessions() as other:  # another upload takes position 1 first
            first = other.scalars(select(Case).where(Case.public_id == public_id)).one()
            first.fields.append(
                CaseField(position=1, sha256="f" * 64, size_bytes=1, state="refused")
            )
            other.commit()
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        assert _crops(migrated_engine) == []
        # As ``save_added`` retries: the same field objects, renumbered, added again.
        case = session.scalars(select(Case).where(Case.public_id == public_id)).one()
        for item, position in zip(fields, (2, 3), strict=True):
            item.position = position
        case.fields.extend(fields)
        session.commit()
    assert [(p, i) for p, i, _, _ in _crops(migrated_engine)] == [(2, 1), (2, 2), (3, 1), (3, 2)]


def test_a_later_flush_does_not_write_the_crops_twice(migrated_engine: Engine) -> None:
    with session_factory(migrated_engine)() as session:
        case = new_case(session, "W-4", "", CARD)
        _field(session, case, 1, n_cells=3)
        session.flush()
        case.note = "changed"
        _field(session, case, 2, n_cells=1)
        session.commit()
    assert [(p, i) for p, i, _, _ in _crops(migrated_engine)] == [(1, 1), (1, 2), (1, 3), (2, 1)]
