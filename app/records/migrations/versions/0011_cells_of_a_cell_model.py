"""cells of a cell model: each leukocyte's class, probabilities, attention and status, and
the class a reviewer gave it, with who and when (all nullable: segmented crops have none)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:44:22.991533
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("class_id", sa.String(length=32)),
    ("probabilities", sa.JSON()),
    ("attention", sa.Double()),
    ("status", sa.String(length=16)),
    ("reviewed_class", sa.String(length=32)),
    ("reviewed_by", sa.String(length=64)),
    ("reviewed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("cell_crops", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cell_crops", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
