"""one sign-off and one correction of it at a time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:06:15.913270
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            "uq_reviews_first_sign_off",
            ["case_id"],
            unique=True,
            sqlite_where=sa.text("signed_off AND supersedes_id IS NULL"),
            postgresql_where=sa.text("signed_off AND supersedes_id IS NULL"),
        )
        batch_op.create_index(
            "uq_reviews_one_correction",
            ["supersedes_id"],
            unique=True,
            sqlite_where=sa.text("supersedes_id IS NOT NULL"),
            postgresql_where=sa.text("supersedes_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_reviews_one_correction",
            sqlite_where=sa.text("supersedes_id IS NOT NULL"),
            postgresql_where=sa.text("supersedes_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_reviews_first_sign_off",
            sqlite_where=sa.text("signed_off AND supersedes_id IS NULL"),
            postgresql_where=sa.text("signed_off AND supersedes_id IS NULL"),
        )
