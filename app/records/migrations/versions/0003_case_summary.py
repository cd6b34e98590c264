"""case verdict and review state for searching

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 11:49:24.973418
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="uncertain")
        )
        batch_op.add_column(sa.Column("class_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("review_state", sa.String(length=16), nullable=False, server_default="none")
        )
        batch_op.create_index(batch_op.f("ix_cases_review_state"), ["review_state"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_status"))
        batch_op.drop_index(batch_op.f("ix_cases_review_state"))
        batch_op.drop_column("review_state")
        batch_op.drop_column("class_id")
        batch_op.drop_column("status")
