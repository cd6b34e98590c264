"""Pages held for one sign-in for a few minutes, so a form's answer can be a redirect.

A form that is answered with a redirect (POST, redirect, GET) needs its answer somewhere
the GET can find it: the quick check's rendered result, or a one-time password or token
that an admin just made. It is held here, in the database (every worker and instance
sees it), bound to the sign-in that asked (the sha256 of its key), and removed when it
is older than ``HOLD_MINUTES``, when that sign-in signs out, or, for a secret, once shown.
The photograph itself is never held: only what the page shows.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.records.schema import Base, UtcDateTime, utcnow

HOLD_MINUTES = 10
KINDS = ("result", "secret")


class HeldPage(Base):
    """What a page shows, held for the sign-in that asked for it."""

    __tablename__ = "held_pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The random part of the page's URL; useless to any other sign-in.
    key: Mapped[str] = mapped_column(String(32), unique=True)
    # sha256 of the sign-in's cookie key, as login_sessions keeps it: a dump signs no one in.
    sign_in: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)


def hold(session: Session, sign_in_key: str, kind: str, payload: dict[str, Any]) -> str:
    """Hold ``payload`` for the sign-in; returns the key of its page. Expired pages go."""
    if kind not in KINDS:
        raise ValueError(f"unknown held page kind {kind!r}")
    sweep(session)
    key = secrets.token_urlsafe(18)
    session.add(HeldPage(key=key, sign_in=_sha256(sign_in_key), kind=kind, payload=payload))
    session.flush()
    return key


def find(session: Session, sign_in_key: str, key: str, kind: str) -> HeldPage | None:
    """The held page, if it is this sign-in's, of this kind and not expired."""
    page = session.scalar(
        select(HeldPage).where(
            HeldPage.key == key,
            HeldPage.sign_in == _sha256(sign_in_key),
            HeldPage.kind == kind,
            HeldPage.created_at >= _oldest_kept(),
        )
    )
    return page


def take(session: Session, sign_in_key: str, key: str, kind: str) -> dict[str, Any] | None:
    """The held page's payload, removed at once (a secret is shown only once)."""
    page = find(session, sign_in_key, key, kind)
    if page is None:
        return None
    session.delete(page)
    return page.payload


def release(session: Session, sign_in_key: str) -> None:
    """Remove every page held for the sign-in (it signs out)."""
    session.execute(delete(HeldPage).where(HeldPage.sign_in == _sha256(sign_in_key)))


def sweep(session: Session, now: datetime | None = None) -> None:
    """Remove the pages older than HOLD_MINUTES, whoever holds them."""
    session.execute(delete(HeldPage).where(HeldPage.created_at < _oldest_kept(now)))


def _oldest_kept(now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(minutes=HOLD_MINUTES)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
