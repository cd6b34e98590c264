"""pages held for one sign-in for a few minutes (a form's answer behind a redirect)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("sign_in", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("held_pages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_held_pages_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_held_pages_sign_in"), ["sign_in"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("held_pages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_held_pages_sign_in"))
        batch_op.drop_index(batch_op.f("ix_held_pages_created_at"))
    op.drop_table("held_pages")
