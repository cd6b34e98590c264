"""The audit trail: one append-only row per action that matters, searchable and exportable.

An event is added to the same database session as the change it records, so both are
committed together or not at all. It names who, what and from where; never image content.
Events are numbered and hash-chained as their transaction commits (``audit_chain``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

from app.records import audit_chain, json_columns
from app.records.schema import AuditEvent, Case, utcnow

ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "password_changed",
    "case_created",
    "case_fields_added",
    "case_viewed",
    "report_exported",
    "case_reviewed",
    "case_signed_off",
    "cell_reclassified",
    "case_deleted",
    "user_created",
    "user_disabled",
    "user_enabled",
    "user_unlocked",
    "user_renamed",
    "token_created",
    "token_revoked",
    "audit_exported",
    "images_collected",
    "backup_created",
    "backup_restored",
    "labels_exported",
)
PAGE_SIZE = 50
CSV_COLUMNS = (
    "id",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object_reference",
    "address",
    "detail",
)
CSV_BATCH = 500
# Where a session keeps the events recorded in its transaction until they are chained.
_UNCHAINED = "audit_events_unchained"


def record(
    session: Session,
    action: str,
    actor: str | None,
    address: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add one event to ``session``'s transaction; it is chained and written when the
    caller commits, and dropped if the transaction is rolled back."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    recorded = AuditEvent(
        at=utcnow(),
        actor=_clip(actor),
        action=action,
        address=_clip(address),  # a forwarded address is whatever the client wrote
        object_type=object_type,
        object_id=_clip(object_id),
        # As the JSON column gives it back (tuples lists, keys strings): what is chained.
        detail=json_columns.as_stored(detail),
    )
    if not session.in_transaction():
        session.begin()  # the event belongs to this transaction: its rollback drops it
    session.info.setdefault(_UNCHAINED, []).append(recorded)
    return recorded


def _clip(text: str | None) -> str | None:
    """At most the 64 characters the columns hold (PostgreSQL refuses more)."""
    return text[:64] if text is not None else None


@sa_event.listens_for(Session, "before_commit")
def _chain_recorded(session: Session) -> None:
    recorded = session.info.pop(_UNCHAINED, None)
    if recorded:
        # The changes the events record are written first, so the append lock waits on none.
        session.flush()
        audit_chain.append(session, recorded)


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_unchained(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (a commit has taken them already)
        session.info.pop(_UNCHAINED, None)


@dataclass(frozen=True)
class AuditQuery:
    actor: str = ""
    action: str = ""
    object_id: str = ""
    since: date | None = None
    until: date | None = None
    page: int = 1

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.actor:
            where.append(AuditEvent.actor == self.actor.strip().lower())
        if self.action:
            where.append(AuditEvent.action == self.action)
        if self.object_id:
            where.append(_object_is(self.object_id.strip()))
        if self.since:
            where.append(AuditEvent.at >= datetime.combine(self.since, time(), UTC))
        if self.until and self.until < date.max:  # the last day has no next day: no bound
            where.append(AuditEvent.at < datetime.combine(self.until + timedelta(1), time(), UTC))
        return where


def _object_is(text: str) -> ColumnElement[bool]:
    """The object named by its id, or a case by its reference (what people know it by)."""
    by_reference = select(Case.public_id).where(Case.reference == text).scalar_subquery()
    return or_(AuditEvent.object_id == text, AuditEvent.object_id.in_(by_reference))


class CaseName(NamedTuple):
    reference: str
    exists: bool  # False: deleted (its events stay; its page does not)


def case_references(session: Session, events: Iterable[AuditEvent]) -> dict[str, CaseName]:
    """The reference of every case the events name, by case id: a case that still exists
    from its row, a deleted one from its deletion event (which keeps the reference)."""
    ids = {e.object_id for e in events if e.object_type == "case" and e.object_id}
    if not ids:
        return {}
    rows = session.execute(select(Case.public_id, Case.reference).where(Case.public_id.in_(ids)))
    found = {public_id: CaseName(reference, True) for public_id, reference in rows}
    gone = ids - found.keys()
    if gone:
        deletions = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "case_deleted", AuditEvent.object_id.in_(gone)
            )
        )
        for event in deletions:
            reference = str(event.detail.get("reference", ""))
            found[str(event.object_id)] = CaseName(reference, False)
    return found


def search_events(session: Session, query: AuditQuery) -> tuple[list[AuditEvent], int]:
    """One page of the matching events, newest first, and how many match in all."""
    where = query.conditions()
    total = session.scalar(select(func.count(AuditEvent.id)).where(*where)) or 0
    rows = session.scalars(
        select(AuditEvent)
        .where(*where)
        .order_by(AuditEvent.id.desc())
        .offset((query.page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    return list(rows), total


def all_events(session: Session, query: AuditQuery) -> Iterable[AuditEvent]:
    """Every matching event, oldest first, read in batches (for the export)."""
    statement = select(AuditEvent).where(*query.conditions()).order_by(AuditEvent.id)
    return session.scalars(statement.execution_options(yield_per=500))


def events_csv(session: Session, events: Iterable[AuditEvent]) -> str:
    """The events as CSV, each case named by its reference too (looked up a batch at a time)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for batch in _batches(events, CSV_BATCH):
        references = case_references(session, batch)
        for e in batch:
            name = references.get(e.object_id or "")
            writer.writerow(_csv_row(e, name.reference if name else ""))
    return out.getvalue()


def _csv_row(e: AuditEvent, reference: str) -> list[str]:
    detail = ";".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
    cells = [
        str(e.id),
        e.at.isoformat(timespec="seconds"),
        e.actor or "",
        e.action,
        e.object_type or "",
        e.object_id or "",
        reference,
        e.address or "",
        detail,
    ]
    return [_no_formula(cell) for cell in cells]


def _batches(events: Iterable[AuditEvent], size: int) -> Iterator[list[AuditEvent]]:
    iterator = iter(events)
    while batch := list(islice(iterator, size)):
        yield batch


def _no_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
