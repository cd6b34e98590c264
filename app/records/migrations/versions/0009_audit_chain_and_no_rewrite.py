"""the audit trail refuses REPLACE (SQLite) and TRUNCATE (PostgreSQL), and each event
carries a hash chained to the event before it (existing events are chained in id order)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.records.audit_chain import GENESIS, ChainRow, link
from app.records.schema import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REFUSAL = "the audit trail is append-only"
BACKFILL_BATCH = 1000
# The table as this revision knows it: the ORM schema is the newest one, not 0009's.
_events = sa.table(
    "audit_events",
    sa.column("id", sa.Integer),
    sa.column("at", UtcDateTime()),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("object_type", sa.String),
    sa.column("object_id", sa.String),
    sa.column("address", sa.String),
    sa.column("detail", sa.JSON),
    sa.column("hash", sa.String),
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    else:
        _drop_sqlite_triggers("audit_events_no_update", "audit_events_no_delete")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    _chain_existing_events()
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
    if postgresql:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit_change()"
        )
    else:
        _sqlite_append_only(overwrite=True)


def _chain_existing_events() -> None:
    """Give every stored event its link, oldest first, as new events get theirs (read a
    batch at a time by id, so a long trail is never all in memory)."""
    bind = op.get_bind()
    columns = [getattr(_events.c, name) for name in ChainRow._fields]
    change = (
        _events.update()
        .where(_events.c.id == sa.bindparam("row_id"))
        .values(hash=sa.bindparam("row_hash"))
    )
    previous, last_id = GENESIS, 0
    while rows := bind.execute(
        sa.select(*columns)
        .where(_events.c.id > last_id)
        .order_by(_events.c.id)
        .limit(BACKFILL_BATCH)
    ).all():
        links = []
        for values in rows:
            previous = link(previous, ChainRow(*values))
            links.append({"row_id": values.id, "row_hash": previous})
        bind.execute(change, links)
        last_id = rows[-1].id


def _sqlite_append_only(overwrite: bool) -> None:
    """No UPDATE, no DELETE and (``overwrite``) no INSERT over an existing id: REPLACE
    deletes the row it replaces without firing DELETE triggers."""
    for change in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_events_no_{change.lower()} BEFORE {change} ON audit_events "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        )
    if overwrite:
        op.execute(
            "CREATE TRIGGER audit_events_no_overwrite BEFORE INSERT ON audit_events "
            "WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id) "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        )


def _drop_sqlite_triggers(*names: str) -> None:
    for name in names:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
    else:
        _drop_sqlite_triggers(
            "audit_events_no_update", "audit_events_no_delete", "audit_events_no_overwrite"
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("hash")
    if not postgresql:
        _sqlite_append_only(overwrite=False)
