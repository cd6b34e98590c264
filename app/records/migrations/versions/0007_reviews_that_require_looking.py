"""reviews that require looking: field views, findings, microscope confirmation, the
acknowledged incomplete upload; users' display names; case verdicts under the screening rule

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:12:40.118204
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from app.core.case_verdict import FieldOutcome, case_verdict
from app.core.model_card import CaseRuleSpec

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The tables as this revision knows them: the ORM schema is the newest one, not 0007's.
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


def upgrade() -> None:
    op.create_table(
        "field_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("field_views", schema=None) as batch_op:
        batch_op.create_index(
            "uq_field_views_case_position_user",
            ["case_id", "position", "username"],
            unique=True,
        )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("finding", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("microscope_confirmation", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "acknowledged_incomplete",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=128), nullable=True))
    _recompute_verdicts()


def _recompute_verdicts() -> None:
    """Store every case's verdict under the screening rule (the list searches on it).

    The pure rule (``app.core.case_verdict``) is applied to rows read here with Core: a
    later change to the rule comes with its own migration, as this one does."""
    bind = op.get_bind()
    outcomes: dict[int, list[FieldOutcome]] = {}
    rows = bind.execute(
        sa.select(
            _fields.c.case_id, _fields.c.position, _fields.c.state, _fields.c.probabilities
        ).order_by(_fields.c.case_id, _fields.c.position)
    )
    for case_id, position, state, probabilities in rows:
        outcomes.setdefault(case_id, []).append(FieldOutcome(state, probabilities, position))
    for case_id, rule in bind.execute(sa.select(_cases.c.id, _cases.c.rule)).all():
        v = case_verdict(outcomes.get(case_id, []), CaseRuleSpec.from_record(_rule(rule)))
        bind.execute(
            _cases.update()
            .where(_cases.c.id == case_id)
            .values(status=v.status, class_id=v.class_id)
        )


def _rule(stored: Any) -> dict[str, Any]:
    return stored if isinstance(stored, dict) else {}


def downgrade() -> None:
    # The stored verdicts stay as the screening rule made them; the next start recomputes
    # nothing, so an older release shows them until a case changes.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("display_name")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_column("acknowledged_incomplete")
        batch_op.drop_column("microscope_confirmation")
        batch_op.drop_column("finding")
    with op.batch_alter_table("field_views", schema=None) as batch_op:
        batch_op.drop_index("uq_field_views_case_position_user")
    op.drop_table("field_views")
