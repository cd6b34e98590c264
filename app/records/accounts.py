"""Accounts, roles, browser sign-ins and API tokens (no Flask: the CLI and tests use it too).

Passwords are hashed with Werkzeug's scrypt. A browser sign-in is a ``LoginSession`` row
whose random key sits in the cookie; an API token is ``ball_<public id>_<secret>``, and
only the secret's sha256 is stored. Changes are added to the caller's session; the
caller commits, together with the audit event that records them. Sign-in attempts are the
exception: each is counted at once, in its own transaction, before the password is looked at.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Delete,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from app.core.errors import RequestRefusedError
from app.records.schema import ApiToken, LoginSession, SignInAttempt, User, UtcDateTime, utcnow

ROLES = ("admin", "clinician", "viewer")
# What each role may do; every route names the one permission it needs.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "clinician": frozenset({"read", "analyse", "review"}),
    "admin": frozenset({"read", "analyse", "review", "delete", "audit", "users"}),
}
MIN_PASSWORD = 12
MAX_PASSWORD = 256
# Attempts in a row, each within LOCK_FOR of the last, that lock a name at one address.
LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=15)
# Every refused sign-in reads the same, so nobody learns which names exist or are locked.
REFUSED = (
    "Wrong username or password, or too many failed attempts from this address: "
    "try again in 15 minutes or ask an administrator."
)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
TOKEN = re.compile(r"^ball_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# Werkzeug's own default, for a database that holds no user yet.
DEFAULT_HASH_METHOD = "scrypt"
# last_seen is written at most this often, not on every request.
_TOUCH_EVERY = timedelta(seconds=60)


class AccountError(RequestRefusedError):
    status = 422
    code = "invalid_account"


class PasswordPolicyError(AccountError):
    code = "weak_password"


class UnknownUserError(AccountError):
    status = 404
    code = "unknown_user"


class LoginError(RequestRefusedError):
    """A refused sign-in (unknown name, wrong password, disabled account): the words are
    the same for every reason; ``code`` tells the audit trail which."""

    status = 401
    code = "login_failed"


class TooManyAttemptsError(LoginError):
    code = "too_many_attempts"


@dataclass(frozen=True)
class SignInLock:
    """A name locked at one client address until a time (or until an admin unlocks it)."""

    address: str
    until: datetime


@dataclass(frozen=True)
class SessionLimits:
    """A sign-in ends after ``idle`` without a request, and ``lifetime`` after it began."""

    idle: timedelta = timedelta(minutes=60)
    lifetime: timedelta = timedelta(hours=12)


MAX_DISPLAY_NAME = 128


def can(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def check_password(password: str, username: str) -> None:
    """Length only (NIST SP 800-63B): no composition rules; not the username itself."""
    if len(password) < MIN_PASSWORD:
        raise PasswordPolicyError(f"A password needs at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise PasswordPolicyError(f"A password has at most {MAX_PASSWORD} characters.")
    if password.strip().lower() == username.lower():
        raise PasswordPolicyError("A password must not be the username.")


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise UnknownUserError(f"There is no user {username!r}.")
    return user


def create_user(
    session: Session,
    username: str,
    role: str,
    password: str,
    must_change: bool = False,
    display_name: str | None = None,
) -> User:
    name = username.strip().lower()
    if not USERNAME.match(name):
        raise AccountError(
            "A username is 2-64 characters: lower-case letters, digits, '.', '_' or '-'."
        )
    if role not in ROLES:
        raise AccountError(f"The role must be one of: {', '.join(ROLES)}.")
    if find_user(session, name) is not None:
        raise AccountError(f"The user {name!r} already exists.")
    check_password(password, name)
    user = User(
        username=name,
        role=role,
        password_hash=generate_password_hash(password),
        must_change_password=must_change,
        display_name=clean_display_name(display_name),
    )
    session.add(user)
    session.flush()
    return user


def clean_display_name(raw: str | None) -> str | None:
    """A person's full name as reports print it (None: not given)."""
    name = " ".join((raw or "").split())
    if not name:
        return None
    if len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise AccountError(f"A full name is at most {MAX_DISPLAY_NAME} printable characters.")
    return name


def set_display_name(user: User, raw: str | None) -> None:
    user.display_name = clean_display_name(raw)


def authenticate(
    session: Session, username: str, password: str, address: str | None = None
) -> User:
    """The active user with this password, asked from ``address``.

    The attempt is counted first, and committed at once, per name and address; beyond
    LOCK_AFTER in a row the name is locked at that address for LOCK_FOR, whatever the
    password. The password is hashed in every case, so an unknown, a wrong and a locked
    name take as long and raise the same words. Call it before writing in ``session``."""
    name, where = _key(username), _key(address or "")
    engine = session.get_bind()
    assert isinstance(engine, Engine)  # sessions here are made on an engine
    attempts = _count_attempt(engine, name, where)
    user = find_user(session, name)
    stored = user.password_hash if user else unknown_name_hash(session)
    right = check_password_hash(stored, password)
    if attempts > LOCK_AFTER:
        raise TooManyAttemptsError(REFUSED)
    if user is None or not user.active or not right:
        raise LoginError(REFUSED)
    with engine.begin() as connection:
        connection.execute(_attempts_of(name).where(SignInAttempt.address == where))
    return user


def _key(text: str) -> str:
    """A name or an address as the attempts are counted under (the columns hold 64)."""
    return text.strip().lower()[:64]


def _count_attempt(engine: Engine, username: str, address: str) -> int:
    """This attempt's number in the current run, counted by one atomic upsert: a run older
    than LOCK_FOR starts again at 1, and a locked run keeps the time it was locked."""
    now = utcnow()
    table = SignInAttempt.__table__
    fresh = table.c.last_at >= now - LOCK_FOR
    statement = (
        _insert(engine)
        .values(username=username, address=address, attempts=1, last_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.username, table.c.address],
            set_={
                "attempts": case((fresh, table.c.attempts + 1), else_=1),
                "last_at": case(
                    (and_(fresh, table.c.attempts >= LOCK_AFTER), table.c.last_at),
                    else_=literal(now, UtcDateTime()),
                ),
            },
        )
        .returning(table.c.attempts)
    )
    with engine.begin() as connection:
        return int(connection.execute(statement).scalar_one())


def _insert(engine: Engine) -> postgresql.Insert | sqlite.Insert:
    """INSERT ... ON CONFLICT in the engine's dialect (both have it, spelt apart)."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(SignInAttempt)
    return sqlite.insert(SignInAttempt)


def _attempts_of(username: str) -> Delete:
    return delete(SignInAttempt).where(SignInAttempt.username == username)


def locks(session: Session, username: str | None = None) -> dict[str, list[SignInLock]]:
    """The names locked now, by name (only ``username``'s when given), with where and until
    when."""
    now = utcnow()
    query = select(SignInAttempt).where(
        SignInAttempt.attempts >= LOCK_AFTER, SignInAttempt.last_at >= now - LOCK_FOR
    )
    if username is not None:
        query = query.where(SignInAttempt.username == _key(username))
    found: dict[str, list[SignInLock]] = {}
    for row in session.scalars(query.order_by(SignInAttempt.address)):
        found.setdefault(row.username, []).append(SignInLock(row.address, row.last_at + LOCK_FOR))
    return found


def unlock(session: Session, user: User) -> int:
    """Forget the user's attempts everywhere; how many addresses were locked."""
    locked = len(locks(session, user.username).get(user.username, []))
    session.execute(_attempts_of(user.username))
    return locked


def unknown_name_hash(session: Session) -> str:
    """What an unknown name's password is checked against: a hash made as the newest
    user's was, so it costs as long to check as a known name's (whatever cost the stored
    hashes were made at)."""
    stored = session.scalar(select(User.password_hash).order_by(User.id.desc()).limit(1))
    method = stored.split("$", 1)[0] if stored else DEFAULT_HASH_METHOD
    try:
        return _stand_in_hash(method)
    except ValueError:  # a hash of a scheme this Werkzeug does not know
        return _stand_in_hash(DEFAULT_HASH_METHOD)


@functools.cache
def _stand_in_hash(method: str) -> str:
    return generate_password_hash("not a password of anyone", method=method)


def check_password_hash_of(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def set_password(session: Session, user: User, password: str) -> None:
    """A new password ends every sign-in of the user; the caller starts a new one."""
    check_password(password, user.username)
    user.password_hash = generate_password_hash(password)
    user.password_changed_at = utcnow()
    user.must_change_password = False
    unlock(session, user)
    end_sessions(session, user)


def set_active(session: Session, user: User, active: bool) -> None:
    """Disabling ends the user's sign-ins; enabling also lifts its locks after failed ones."""
    user.active = active
    if active:
        unlock(session, user)
    else:
        end_sessions(session, user)


def start_session(session: Session, user: User) -> str:
    """A new sign-in; its key goes in the cookie and is never stored."""
    key = secrets.token_urlsafe(32)
    session.add(LoginSession(key_hash=_sha256(key), user_id=user.id))
    session.flush()
    return key


def session_user(session: Session, key: str, limits: SessionLimits) -> User | None:
    """The user of a live sign-in, or None when it ended, expired or its user was disabled."""
    # The user in the same query: every signed-in page asks.
    query = select(LoginSession).options(joinedload(LoginSession.user))
    sign_in = session.scalar(query.where(LoginSession.key_hash == _sha256(key)))
    now = utcnow()
    if (
        sign_in is None
        or sign_in.ended_at is not None
        or not sign_in.user.active
        or now - sign_in.created_at > limits.lifetime
        or now - sign_in.last_seen > limits.idle
    ):
        return None
    if now - sign_in.last_seen > _TOUCH_EVERY:
        sign_in.last_seen = now
    return sign_in.user


def end_session(session: Session, key: str) -> None:
    session.execute(
        update(LoginSession)
        .where(LoginSession.key_hash == _sha256(key), LoginSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def end_sessions(session: Session, user: User) -> None:
    session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user.id, LoginSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def create_token(session: Session, user: User) -> tuple[ApiToken, str]:
    """A new API token for ``user`` and its one and only plain text."""
    public_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken(public_id=public_id, secret_hash=_sha256(secret), user_id=user.id)
    session.add(token)
    session.flush()
    return token, f"ball_{public_id}_{secret}"


@dataclass(frozen=True)
class TokenHolder:
    """The user a valid token speaks for, and whether the token's last use is due to be
    written (at most every minute, like a sign-in's)."""

    public_id: str
    # A copy of the user's row in no session: a request reads it, nothing writes through it.
    user: User
    touch_due: bool


# One indexed read of the token with its user: an API request's only query.
_TOKEN_HOLDER = (
    select(
        ApiToken.secret_hash,
        ApiToken.revoked_at,
        ApiToken.last_used,
        User.id,
        User.username,
        User.display_name,
        User.role,
        User.active,
        User.must_change_password,
    )
    .join(User, ApiToken.user_id == User.id)
    .where(ApiToken.public_id == bindparam("public_id"))
)


def token_holder(connection: Connection, text: str) -> TokenHolder | None:
    """Who a well-formed, unrevoked token of an active user belongs to, else None; read
    afresh on every call, so a revocation or a disabled user counts at the next request.

    Raises LoginError for text that is not a token at all."""
    match = TOKEN.match(text)
    if match is None:
        raise LoginError("The bearer token is malformed: expected ball_<id>_<secret>.")
    public_id, secret = match.groups()
    row = connection.execute(_TOKEN_HOLDER, {"public_id": public_id}).one_or_none()
    if row is None or not hmac.compare_digest(row.secret_hash, _sha256(secret)):
        return None
    if row.revoked_at is not None or not row.active:
        return None
    user = User(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,
        active=row.active,
        must_change_password=row.must_change_password,
    )
    due = row.last_used is None or utcnow() - row.last_used > _TOUCH_EVERY
    return TokenHolder(public_id, user, due)


def touch_token(session: Session, public_id: str) -> None:
    """Record the token's use now, in ``session``'s transaction."""
    session.execute(
        update(ApiToken).where(ApiToken.public_id == public_id).values(last_used=utcnow())
    )


def get_token(session: Session, public_id: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.public_id == public_id.strip()))
    if token is None:
        raise UnknownUserError(f"There is no API token {public_id!r}.")
    return token


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()


def user_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at)
        )
    )


def all_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def any_user(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
