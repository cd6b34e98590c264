"""The tables: a case, its fields (one uploaded photograph each), its reviews and who
opened which field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC time on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Case(Base):
    """One patient's smear: its fields analysed by one model, and its reviews."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The case's URL: random, so case numbers cannot be guessed or counted.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The lab's accession number (never a patient's name).
    reference: Mapped[str] = mapped_column(String(64), index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    # The account that created it (nullable until accounts exist).
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    # The case rule's thresholds when the case was created (``CaseRuleSpec`` fields).
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Photographs announced by an upload that sends them one by one (None: all came at once).
    expected_fields: Mapped[int | None]
    # The case verdict and review state, kept current for searching (``cases.refresh``).
    status: Mapped[str] = mapped_column(
        String(16), default="uncertain", server_default="uncertain", index=True
    )
    class_id: Mapped[str | None] = mapped_column(String(32))
    review_state: Mapped[str] = mapped_column(
        String(16), default="none", server_default="none", index=True
    )

    fields: Mapped[list[CaseField]] = relationship(
        back_populates="case", order_by="CaseField.position", cascade="all, delete-orphan"
    )
    reviews: Mapped[list[Review]] = relationship(
        back_populates="case", order_by="Review.id", cascade="all, delete-orphan"
    )

    @property
    def missing_fields(self) -> int:
        """Photographs announced but never received (an upload that stopped part-way)."""
        return max(0, (self.expected_fields or 0) - len(self.fields))

    @property
    def signed_off(self) -> Review | None:
        """The review that signed the case off (the latest correction, if any)."""
        signed = [r for r in self.reviews if r.signed_off]
        return signed[-1] if signed else None


class CaseField(Base):
    """One photograph of a case and what the model made of it (or why it was refused)."""

    __tablename__ = "case_fields"
    __table_args__ = (Index("ix_case_fields_case_position", "case_id", "position", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    position: Mapped[int]
    # The client's file name, made safe: it helps find the field again.
    filename: Mapped[str] = mapped_column(String(128), default="")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int]
    image_format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None]
    height: Mapped[int | None]
    # answered, uncertain, out_of_distribution or refused (``app.core.case_verdict``).
    state: Mapped[str] = mapped_column(String(24))
    class_id: Mapped[str | None] = mapped_column(String(32))
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON)
    # The out-of-distribution score and reasons, the scale check, the timings.
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error_code: Mapped[str | None] = mapped_column(String(48))
    error_message: Mapped[str | None] = mapped_column(Text)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Whether the original is in the image store (STORE_IMAGES).
    stored: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    case: Mapped[Case] = relationship(back_populates="fields")
    cells: Mapped[list[CellCrop]] = relationship(
        back_populates="field", order_by="CellCrop.index", cascade="all, delete-orphan"
    )


class CellCrop(Base):
    """One leukocyte of a field, cut out for the case's cell gallery: segmented for a model
    of the whole field (no class), or read and classified by a cell model (``class_id``
    set), which a reviewer may reclassify (``reviewed_class``)."""

    __tablename__ = "cell_crops"

    id: Mapped[int] = mapped_column(primary_key=True)
    field_id: Mapped[int] = mapped_column(
        ForeignKey("case_fields.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int]
    # A segmented cell: x0, y0, x1, y1 in the pixels of the field the model saw; a cell
    # model's: x, y, width, height in the uploaded photograph's pixels (as its API gives).
    box: Mapped[list[int]] = mapped_column(JSON)
    image: Mapped[bytes] = mapped_column(LargeBinary)
    # A cell model's reading of the cell: its most likely class, the probabilities, its
    # weight in the field's answer and ``classified`` or ``uncertain``.
    class_id: Mapped[str | None] = mapped_column(String(32))
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON)
    attention: Mapped[float | None]
    status: Mapped[str | None] = mapped_column(String(16))
    # The class a reviewer gave the cell (the model's own when they confirmed it).
    reviewed_class: Mapped[str | None] = mapped_column(String(32))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    field: Mapped[CaseField] = relationship(back_populates="cells")

    @property
    def shown_class(self) -> str | None:
        """The reviewer's class when there is one, else the model's (None: unclassified)."""
        return self.reviewed_class or self.class_id


class Review(Base):
    """A reviewer's verdict on a case. Signed-off reviews are never edited: a correction
    is a new review that ``supersedes`` the one it corrects."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str | None] = mapped_column(String(64))
    # agree: the model's case verdict stands; override: the reviewer chose ``class_id``.
    decision: Mapped[str] = mapped_column(String(16))
    # A class id, or a reviewer's finding (``app.records.cases.FINDINGS``).
    class_id: Mapped[str] = mapped_column(String(32))
    # The words of an "other finding" (None for every other verdict).
    finding: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(Text, default="")
    signed_off: Mapped[bool] = mapped_column(default=False)
    # What the reviewer saw at the microscope, when that stood in for opening the fields.
    microscope_confirmation: Mapped[str | None] = mapped_column(Text)
    # Signed off knowing photographs of the upload were missing.
    acknowledged_incomplete: Mapped[bool] = mapped_column(default=False, server_default=false())
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    case: Mapped[Case] = relationship(back_populates="reviews")

    # Two reviewers signing off, or correcting one sign-off, at once: the database keeps
    # the first and refuses the second.
    __table_args__ = (
        Index(
            "uq_reviews_first_sign_off",
            "case_id",
            unique=True,
            sqlite_where=text("signed_off AND supersedes_id IS NULL"),
            postgresql_where=text("signed_off AND supersedes_id IS NULL"),
        ),
        Index(
            "uq_reviews_one_correction",
            "supersedes_id",
            unique=True,
            sqlite_where=text("supersedes_id IS NOT NULL"),
            postgresql_where=text("supersedes_id IS NOT NULL"),
        ),
    )


class FieldView(Base):
    """A reviewer opened a field of a case (the first time only): sign-off asks for it."""

    __tablename__ = "field_views"
    __table_args__ = (
        Index("uq_field_views_case_position_user", "case_id", "position", "username", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    position: Mapped[int]
    username: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class User(Base):
    """Someone who signs in. Never deleted, only disabled, so the username that cases,
    reviews and audit events name stays the person's for good."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The person's full name, for reviewers' signatures (None: show the username).
    display_name: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    # Set for a password someone else chose (the development admin's): change it first.
    must_change_password: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SignInAttempt(Base):
    """Sign-in attempts in a row for one name, as typed, from one client address: enough of
    them lock that name at that address only (``accounts.LOCK_AFTER``), so an attacker is
    held back without locking the owner out elsewhere. Counted by one atomic upsert."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("uq_sign_in_attempts_username_address", "username", "address", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int]
    # The latest attempt counted; once locked, the attempt that locked it.
    last_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LoginSession(Base):
    """One sign-in in a browser. The cookie holds only its random key, so logout, expiry,
    a disabled account or a new password end it on the server."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of the key in the cookie: a database dump signs no one in.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for the API. Shown once; only its sha256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The token's public part (TOKEN_ID of ``flask tokens revoke``).
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    user: Mapped[User] = relationship()


class AuditEvent(Base):
    """Who did what, to which object, when, from where. Rows are only ever inserted:
    the database refuses updates and deletes (migration 0005), REPLACE and TRUNCATE (0009),
    and each row's hash chains it to the row before (``app.records.audit_chain``)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    # The username as typed for a failed login; None for the system (the development admin).
    actor: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    object_type: Mapped[str | None] = mapped_column(String(16))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    # Short facts about the action (a role, a class, a count); never image content.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # sha256 of the previous row's hash and this row's content (set when committed).
    hash: Mapped[str] = mapped_column(String(64))
