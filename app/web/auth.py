"""Who is asking, and may they: sign-in sessions, API tokens, roles and login throttling.

Every route names the one permission it needs with ``@requires``; ``@public`` marks the
few that need no identity. A hook checks both before any view runs, so a route added
without either is refused to everyone (and the URL-map test fails) rather than left open.
Pages take the browser's sign-in; the API and /metrics take only a bearer token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from werkzeug.exceptions import Forbidden, Unauthorized

from app.records import accounts, held
from app.records.audit import record
from app.records.schema import User
from app.web.records import db, on_commit, reading

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
# Flask's own static files view cannot be decorated.
PUBLIC_ENDPOINTS = frozenset({"static"})
# Blueprints answered only with a bearer token (machines, not browsers).
TOKEN_BLUEPRINTS = frozenset({"api", "case_api", "metrics"})
# What a user who must change their password may still open.
PASSWORD_CHANGE_ENDPOINTS = frozenset({"auth.password", "auth.logout", "static"})

login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://")


# HTTP errors, not RequestRefusedErrors: a blueprint's form handlers must not catch them.
class UnauthenticatedError(Unauthorized):
    pass


class ForbiddenError(Forbidden):
    pass


@dataclass
class Identity:
    """The signed-in user of this request, by sign-in key (browser) or by token (API)."""

    user: User
    key: str | None = None

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str | None:
        # Flask-Login keeps this in the cookie: the sign-in's key, never the user's id.
        return self.key

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> str:
        return self.user.role

    def can(self, permission: str) -> bool:
        return accounts.can(self.user.role, permission)


def requires(permission: str) -> Callable[[F], F]:
    """Mark a view with the permission it needs (see ``accounts.PERMISSIONS``)."""
    if permission not in {p for ps in accounts.PERMISSIONS.values() for p in ps}:
        raise ValueError(f"unknown permission {permission!r}")

    def mark(view: F) -> F:
        view.permission = permission  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Mark a view that needs no identity (health probes, the login page)."""
    view.permission = PUBLIC  # type: ignore[attr-defined]
    return view


def permission_of(app: Flask, endpoint: str) -> str | None:
    if endpoint in PUBLIC_ENDPOINTS:
        return PUBLIC
    return getattr(app.view_functions.get(endpoint), "permission", None)


def identity() -> Identity | None:
    user = current_user
    return user if isinstance(user, Identity) else None


def actor() -> str | None:
    who = identity()
    return who.username if who is not None else None


def address() -> str | None:
    return request.remote_addr


def audit(
    action: str, object_type: str | None = None, object_id: str | None = None, **detail: Any
) -> None:
    """Record ``action`` by this request's user; committed with the request's change."""
    record(db(), action, actor(), address(), object_type, object_id, **detail)


def sign_in(user: User) -> None:
    """Start a new sign-in: a fresh session (new key, new CSRF token), so none is reused."""
    session.clear()
    key = accounts.start_session(db(), user)
    session.permanent = True
    login_user(Identity(user, key))


def sign_in_key() -> str:
    """The browser sign-in's key (pages that hold something for it need one)."""
    who = identity()
    if who is None or who.key is None:
        raise ForbiddenError("This needs a sign-in in the browser.")
    return who.key


def sign_out() -> None:
    who = identity()
    if who is not None and who.key is not None:
        accounts.end_session(db(), who.key)
        held.release(db(), who.key)  # a held result or secret ends with the sign-in
    logout_user()
    session.clear()


def limits() -> accounts.SessionLimits:
    config = current_app.config
    return accounts.SessionLimits(
        idle=timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
        lifetime=timedelta(hours=config["SESSION_LIFETIME_HOURS"]),
    )


def init_app(app: Flask) -> None:
    """Install sign-in, tokens, throttling and the identity check on every request."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["SESSION_LIFETIME_HOURS"])
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
    login_manager.user_loader(_from_sign_in)
    login_manager.request_loader(_from_token)
    # Registered before CSRF's own check, so an anonymous form post goes to the login page.
    app.before_request(_check_identity)


def _from_sign_in(key: str) -> Identity | None:
    if _token_only():
        return None
    user = accounts.session_user(db(), key, limits())
    return Identity(user, key) if user is not None else None


def _from_token(_request: Any) -> Identity | None:
    if not _token_only():
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, text = header.partition(" ")
    if scheme.lower() != "bearer" or not text.strip():
        g.token_problem = "The Authorization header must be 'Bearer <token>'."
        return None
    try:
        with reading() as connection:
            holder = accounts.token_holder(connection, text.strip())
    except accounts.LoginError as exc:
        g.token_problem = exc.message
        return None
    if holder is None:
        g.token_problem = "The token is not valid: it was revoked, or its user is disabled."
        return None
    if holder.touch_due:
        public_id = holder.public_id
        on_commit(lambda session: accounts.touch_token(session, public_id))
    return Identity(holder.user)


def _token_only() -> bool:
    return request.blueprint in TOKEN_BLUEPRINTS


def _check_identity() -> Any:
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route: the 404 or 405 says so
    permission = permission_of(current_app, endpoint)
    if permission == PUBLIC:
        return None
    who = identity()
    if who is None:
        if _token_only():
            raise UnauthenticatedError(
                g.get("token_problem")
                or "Send an API token: Authorization: Bearer <token> (flask tokens create)."
            )
        return redirect(url_for("auth.login", next=_local_path()))
    if who.user.must_change_password and endpoint not in PASSWORD_CHANGE_ENDPOINTS:
        if _token_only():
            raise ForbiddenError("Change your password in the browser before using the API.")
        return redirect(url_for("auth.password"))
    if permission is None or not who.can(permission):
        raise ForbiddenError(
            f"Your role ({who.role}) does not allow this."
            if permission is not None
            else "This address is open to no role."
        )
    return None


def _local_path() -> str:
    """Where to come back to after signing in: this path and query, on this site only."""
    path = request.full_path if request.query_string else request.path
    return path if is_local_path(path) else "/"


def is_local_path(target: str) -> bool:
    """Whether ``target`` is a path on this site: one leading ``/``, no scheme or host, no
    backslash and no control character (browsers drop a tab: "/<tab>/x" is "//x")."""
    if not target.isprintable() or "\\" in target or not target.startswith("/"):
        return False
    parts = urlsplit(target)
    return not target.startswith("//") and not parts.scheme and not parts.netloc
