"""The audit trail's hash chain: each event carries the sha256 of the event before it and
of its own content, so changing, removing, inserting or reordering an event breaks the
link of every event after it (``flask audit verify`` finds the first broken one).

Events are numbered and chained when their transaction commits, one writer at a time (an
advisory lock on PostgreSQL, the write lock on SQLite), so concurrent requests and
instances append to one chain. The chain proves no rewrite of what it covers; removing
the newest events shows only against a head noted elsewhere (``verify`` prints it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from app.records.schema import AuditEvent

# The link before the first event.
GENESIS = "0" * 64
# Any fixed number, not the migrations' lock: the PostgreSQL lock that serialises appends.
_APPEND_LOCK = 74_213_902
VERIFY_BATCH = 1000


class ChainRow(NamedTuple):
    """What an event's hash covers: every column but the hash itself."""

    id: int
    at: datetime
    actor: str | None
    action: str
    object_type: str | None
    object_id: str | None
    address: str | None
    detail: dict[str, Any]


def canonical(row: ChainRow) -> str:
    """One text per content: sorted keys, no spaces, UTC microseconds, ASCII only."""
    at = row.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    values = [row.id, at, row.actor, row.action, row.object_type, row.object_id, row.address]
    return json.dumps([*values, row.detail], sort_keys=True, separators=(",", ":"))


def link(previous: str, row: ChainRow) -> str:
    """The hash of ``row`` chained to the hash of the event before it."""
    return hashlib.sha256(f"{previous}\n{canonical(row)}".encode()).hexdigest()


def chain_row(event: AuditEvent) -> ChainRow:
    return ChainRow(
        event.id,
        event.at,
        event.actor,
        event.action,
        event.object_type,
        event.object_id,
        event.address,
        event.detail,
    )


def append(session: Session, events: Iterable[AuditEvent]) -> None:
    """Number ``events`` after the newest stored one, chain them and add them to
    ``session``; the lock taken here is held until the transaction ends."""
    connection = session.connection()
    lock_appends(connection)
    newest = connection.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    previous_id, previous = (newest.id, newest.hash) if newest else (0, GENESIS)
    for event in events:
        previous_id += 1
        event.id = previous_id
        event.hash = previous = link(previous, chain_row(event))
        session.add(event)


def lock_appends(connection: Connection) -> None:
    """Wait until no other transaction is appending, and keep them waiting until this one
    ends (the read of the newest event and the insert must not interleave)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
        return
    raw = connection.connection.driver_connection
    # sqlite3 begins only before a write: begin now, with the write lock, or a reader's
    # snapshot could miss an event committed between the read and the insert.
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class ChainCheck:
    """What ``verify`` found: how many events, the newest hash, the first broken link."""

    events: int
    head: str
    broken_at: int | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(session: Session) -> ChainCheck:
    """Recompute every link, oldest first; stop at the first event that does not follow."""
    columns = [getattr(AuditEvent, name) for name in ChainRow._fields]
    rows = session.execute(
        select(*columns, AuditEvent.hash)
        .order_by(AuditEvent.id)
        .execution_options(yield_per=VERIFY_BATCH)
    )
    previous, count = GENESIS, 0
    try:
        for *values, stored in rows:
            row = ChainRow(*values)
            if stored != link(previous, row):
                return ChainCheck(count, previous, broken_at=row.id)
            previous, count = stored, count + 1
    finally:
        rows.close()  # PostgreSQL reads through a server-side cursor: left early, close it
    return ChainCheck(count, previous)
