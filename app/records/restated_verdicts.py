"""Every stored case verdict restated under the screening rule as it is now.

The case list searches on each case's stored verdict, so a change to the rule
(``app.core.case_verdict``) comes with a migration that calls this. Rows are read and
written with Core on the few columns the rule needs, not the ORM schema, which is the
newest one and may hold columns a migration's database does not have yet.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.core.case_verdict import FieldOutcome, case_verdict
from app.core.model_card import CaseRuleSpec

_cases = sa.table(
    "cases",
    sa.column("id", sa.Integer),
    sa.column("rule", sa.JSON),
    sa.column("status", sa.String),
    sa.column("class_id", sa.String),
)
_fields = sa.table(
    "case_fields",
    sa.column("case_id", sa.Integer),
    sa.column("position", sa.Integer),
    sa.column("state", sa.String),
    sa.column("probabilities", sa.JSON),
)


def restate_verdicts(bind: sa.Connection) -> None:
    """Store every case's verdict by its own stored rule, writing only those that change."""
    outcomes: dict[int, list[FieldOutcome]] = {}
    rows = bind.execute(
        sa.select(
            _fields.c.case_id, _fields.c.position, _fields.c.state, _fields.c.probabilities
        ).order_by(_fields.c.case_id, _fields.c.position)
    )
    for case_id, position, state, probabilities in rows:
        outcomes.setdefault(case_id, []).append(FieldOutcome(state, probabilities, position))
    cases = bind.execute(sa.select(_cases.c.id, _cases.c.rule, _cases.c.status, _cases.c.class_id))
    for case_id, rule, status, class_id in cases.all():
        v = case_verdict(outcomes.get(case_id, []), CaseRuleSpec.from_record(_rule(rule)))
        if (v.status, v.class_id) == (status, class_id):
            continue
        bind.execute(
            _cases.update()
            .where(_cases.c.id == case_id)
            .values(status=v.status, class_id=v.class_id)
        )


def _rule(stored: Any) -> dict[str, Any]:
    return stored if isinstance(stored, dict) else {}
