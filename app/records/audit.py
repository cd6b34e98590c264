"""The audit trail: one append-only row per action that matters, searchable and exportable.

An event is added to the same database session as the change it records, so both are
committed together or not at all. It names who, what and from where; never image content.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.records.schema import AuditEvent

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
    "case_deleted",
    "user_created",
    "user_disabled",
    "user_enabled",
    "token_created",
    "token_revoked",
    "audit_exported",
    "backup_created",
    "backup_restored",
)
PAGE_SIZE = 50
CSV_COLUMNS = ("id", "at", "actor", "action", "object_type", "object_id", "address", "detail")


def record(
    session: Session,
    action: str,
    actor: str | None,
    address: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add one event to ``session``; it is written when the caller commits."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(
        actor=actor,
        action=action,
        address=address,
        object_type=object_type,
        object_id=object_id,
        detail=detail,
    )
    session.add(event)
    return event


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
            where.append(AuditEvent.object_id == self.object_id.strip())
        if self.since:
            where.append(AuditEvent.at >= datetime.combine(self.since, time(), UTC))
        if self.until:
            where.append(AuditEvent.at < datetime.combine(self.until + timedelta(1), time(), UTC))
        return where


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


def events_csv(events: Iterable[AuditEvent]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in events:
        detail = ";".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
        writer.writerow(
            [
                e.id,
                e.at.isoformat(timespec="seconds"),
                _no_formula(e.actor or ""),
                e.action,
                e.object_type or "",
                _no_formula(e.object_id or ""),
                e.address or "",
                _no_formula(detail),
            ]
        )
    return out.getvalue()


def _no_formula(text: str) -> str:
    """A cell a spreadsheet would run as a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
