"""cell crops for the gallery

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 11:43:40.429342
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cell_crops",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("field_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["field_id"], ["case_fields.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cell_crops", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cell_crops_field_id"), ["field_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cell_crops", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cell_crops_field_id"))

    op.drop_table("cell_crops")
