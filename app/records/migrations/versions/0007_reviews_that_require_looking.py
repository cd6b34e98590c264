"""reviews that require looking: field views, findings, microscope confirmation, the
acknowledged incomplete upload; users' display names; case verdicts under the screening rule

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:12:40.118204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.records.restated_verdicts import restate_verdicts

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


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
    # Every case's verdict under the screening rule (the list searches on it).
    restate_verdicts(op.get_bind())


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
