"""Migrations 0007 and 0012 on a database that already holds cases, on SQLite and PostgreSQL:
0007's field views, the review's new columns, users' display names, and every stored case
verdict restated under the screening rule; 0012's verdicts restated where an uncertain field
leans malignant on its malignant classes summed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from app.records.database import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
# A rule as cases stored it before the screening rule (0006's time).
OLD_RULE = {
    "method": "",
    "min_used_share": 1 / 3,
    "min_agreement": 0.5,
    "val_cases": 0,
    "val_silent_error_rate": None,
    "val_uncertain_rate": None,
}
BENIGN = {"benign": 0.9, "early_pre_b": 0.04, "pre_b": 0.03, "pro_b": 0.03}
PRE_B = {"benign": 0.1, "early_pre_b": 0.05, "pre_b": 0.8, "pro_b": 0.05}


def _tables(engine: Engine) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(engine)
    return dict(metadata.tables)


def _old_case(
    connection: sa.Connection,
    tables: dict[str, sa.Table],
    reference: str,
    rule: dict[str, Any] = OLD_RULE,
) -> int:
    """A case as an older release kept it: its verdict stored as benign (0006's averaging
    rule by default)."""
    cases = tables["cases"]
    row = connection.execute(
        cases.insert()
        .values(
            public_id=f"pid-{reference}",
            reference=reference,
            note="",
            created_at=NOW,
            updated_at=NOW,
            model_name="lenet",
            model_version="1.3.0",
            rule=rule,
            status="benign",
            class_id="benign",
            review_state="none",
        )
        .returning(cases.c.id)
    )
    return int(row.scalar_one())


def _field(
    connection: sa.Connection,
    tables: dict[str, sa.Table],
    case_id: int,
    position: int,
    p: dict[str, Any],
    state: str = "answered",
) -> None:
    connection.execute(
        tables["case_fields"]
        .insert()
        .values(
            case_id=case_id,
            position=position,
            filename=f"{position}.jpg",
            sha256=f"{case_id:032d}{position:032d}",
            size_bytes=1,
            state=state,
            class_id=max(p, key=p.__getitem__),
            probabilities=p,
            checks={},
            timings={},
            stored=False,
            created_at=NOW,
        )
    )


def test_0007_restates_verdicts_and_adds_field_views_and_review_columns(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "0006")
    tables = _tables(engine)
    with engine.begin() as connection:
        mixed = _old_case(connection, tables, "MIXED")
        for position, p in enumerate([BENIGN, BENIGN, BENIGN, PRE_B], start=1):
            _field(connection, tables, mixed, position, p)
        benign = _old_case(connection, tables, "BENIGN")
        for position in (1, 2):
            _field(connection, tables, benign, position, BENIGN)
        empty = _old_case(connection, tables, "EMPTY")
        connection.execute(
            tables["users"]
            .insert()
            .values(
                username="dr-a",
                password_hash="x",
                role="clinician",
                active=True,
                must_change_password=False,
                failed_logins=0,
                created_at=NOW,
                password_changed_at=NOW,
            )
        )

    command.upgrade(alembic_config(engine), "0007")
    assert current_revision(engine) == "0007"
    tables = _tables(engine)
    cases = tables["cases"]
    with engine.connect() as connection:
        stored = {
            row.id: (row.status, row.class_id)
            for row in connection.execute(sa.select(cases.c.id, cases.c.status, cases.c.class_id))
        }
        assert stored[mixed] == ("malignant", "pre_b")  # one malignant field escalates
        assert stored[benign] == ("benign", "benign")
        assert stored[empty] == ("uncertain", None)
        assert connection.execute(sa.select(tables["users"].c.display_name)).scalar_one() is None
    assert {"finding", "microscope_confirmation", "acknowledged_incomplete"} <= set(
        tables["reviews"].c.keys()
    )

    views = tables["field_views"]
    seen = {"case_id": mixed, "position": 4, "username": "dr-a", "first_seen": NOW}
    with engine.begin() as connection:
        connection.execute(views.insert().values(**seen))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(views.insert().values(**seen))  # one row per case, field, user
    with engine.begin() as connection:
        connection.execute(cases.delete().where(cases.c.id == mixed))
        assert connection.execute(sa.select(sa.func.count()).select_from(views)).scalar() == 0

    # Down and up again: the migration is reversible, and the rest of the chain follows.
    command.downgrade(alembic_config(engine), "0006")
    assert "field_views" not in sa.inspect(engine).get_table_names()
    assert upgrade(engine) == head_revision()


def test_0012_restates_a_case_whose_uncertain_field_leans_malignant(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "0011")
    tables = _tables(engine)
    rule = {"min_used_share": 1 / 3, "escalate_at": 0.5}
    # Benign leads at 40%, but blasts, any subtype, are 60%: 0011's rule called this benign.
    split = {"benign": 0.40, "early_pre_b": 0.15, "pre_b": 0.30, "pro_b": 0.15}
    with engine.begin() as connection:
        leaning = _old_case(connection, tables, "LEANING", rule)
        for position in (1, 2, 3):
            _field(connection, tables, leaning, position, BENIGN)
        _field(connection, tables, leaning, 4, split, state="uncertain")
        benign = _old_case(connection, tables, "BENIGN", rule)
        _field(connection, tables, benign, 1, BENIGN)

    command.upgrade(alembic_config(engine), "0012")
    cases = _tables(engine)["cases"]

    def stored() -> dict[int, tuple[str, str | None]]:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(cases.c.id, cases.c.status, cases.c.class_id))
            return {row.id: (row.status, row.class_id) for row in rows}

    assert stored() == {leaning: ("uncertain", "pre_b"), benign: ("benign", "benign")}
    # Down keeps the cautious verdicts; up again changes nothing.
    command.downgrade(alembic_config(engine), "0011")
    assert stored()[leaning] == ("uncertain", "pre_b")
    assert upgrade(engine) == head_revision()
    assert stored()[leaning] == ("uncertain", "pre_b")
