"""case verdicts restated under the screening rule's lean: a field leans malignant when its
three malignant classes together hold at least its benign probability, not only when one of
them is its most likely class (no schema change)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:00:00.000000
"""

from __future__ import annotations

from alembic import op

from app.records.restated_verdicts import restate_verdicts

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    restate_verdicts(op.get_bind())


def downgrade() -> None:
    # The verdicts stay as the newer rule stated them: the cautious reading, and an older
    # release restates a case the next time it changes.
    pass
