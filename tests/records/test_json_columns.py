"""The JSON columns' text: orjson's, read back as the standard library would give it, on
SQLite and PostgreSQL; what orjson cannot write or read goes through the standard library."""

from __future__ import annotations

import json
import math

from sqlalchemy import Engine, select, text

from app.core.model_card import ModelCard
from app.records.cases import new_case
from app.records.database import session_factory
from app.records.json_columns import as_stored, json_text, json_value
from app.records.schema import CaseField

CARD = ModelCard(name="lenet", version="1", input_size=224)

VALUES = [
    {"benign": 0.12345678901234567, "pro_b": 1e-300, "pre_b": 0.1 + 0.2},
    {"box": (1, 2, 3, 4), "nested": {"list": [None, True, False, "Früh → Pre-B"]}},
    {1: "an int key", "2": 2.5},
    [2**63 - 1, -(2**63)],
]


def test_values_read_back_as_the_standard_library_reads_them() -> None:
    for value in VALUES:
        assert json_value(json_text(value)) == json.loads(json.dumps(value))
        assert as_stored(value) == json.loads(json.dumps(value))  # floats to the last bit


def test_what_orjson_cannot_write_or_read_the_standard_library_does() -> None:
    assert json_value(json_text({"big": 2**70})) == {"big": 2**70}
    assert math.isnan(json_value('{"old": NaN}')["old"])  # a row written before orjson


def test_a_json_column_round_trips_on_both_databases(migrated_engine: Engine) -> None:
    checks = {"ood": {"score": 0.1 + 0.2, "reasons": ["texture"]}, "note": "Früh → Pre-B"}
    sessions = session_factory(migrated_engine)
    with sessions() as session:
        case = new_case(session, "REF-1", None, CARD)
        case.fields.append(
            CaseField(position=1, sha256="0" * 64, size_bytes=1, state="answered", checks=checks)
        )
        session.commit()
    with sessions() as session:
        assert session.scalar(select(CaseField.checks)) == checks
        stored = session.scalar(text("SELECT checks FROM case_fields"))
    # SQLite holds orjson's compact text; PostgreSQL's driver hands back the value.
    assert stored == (json_text(checks) if isinstance(stored, str) else checks)
