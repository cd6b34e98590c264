"""Administration: the audit trail (filters, pages, CSV) and the users with their API tokens.

The audit trail is only ever read here: no route changes or removes an event.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError

from app.core.errors import RequestRefusedError
from app.records import accounts, held
from app.records.audit import (
    ACTIONS,
    PAGE_SIZE,
    AuditQuery,
    all_events,
    case_references,
    events_csv,
    search_events,
)
from app.records.cases import MAX_PAGE, CaseInputError
from app.web.auth import audit, identity, requires, sign_in_key
from app.web.errors import describe, flash_form_error, flashed_form_error, respond
from app.web.records import commit, db
from app.web.search_args import dates_and_page

bp = Blueprint("admin", __name__, url_prefix="/admin")
# The query keys the page links carry on (never url_for's own, such as _method).
AUDIT_FILTERS = ("actor", "action", "object", "from", "to")


@bp.get("/audit")
@requires("audit")
def audit_trail() -> tuple[str, int]:
    try:
        query = _audit_query()
    except CaseInputError as exc:
        return _audit_page(None, [], 0, error=exc.message, references={}), 422
    events, total = search_events(db(), query)
    references = case_references(db(), events)
    return _audit_page(query, events, total, references=references), 200


@bp.get("/audit.csv")
@requires("audit")
def audit_csv() -> Response:
    query = _audit_query()
    text = events_csv(db(), all_events(db(), query))
    audit("audit_exported", filters=_filters_text(query))
    commit()
    name = f"audit-{date.today().isoformat()}.csv"
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/users")
@requires("users")
def users() -> tuple[str, int]:
    """The users; after a new user or token, its secret once (``shown``: the held page)."""
    shown = request.args.get("shown", "")
    payload = held.take(db(), sign_in_key(), shown, "secret") if shown else None
    commit()  # a secret is shown once: reload shows the page without it
    secret = (payload["kind"], payload["owner"], payload["text"]) if payload else None
    error, _ = flashed_form_error()
    return _users_page(error=error, secret=secret), 200


@bp.post("/users")
@requires("users")
def create_user() -> Any:
    form = request.form
    password = _one_time_password()
    user = accounts.create_user(
        db(),
        form.get("username", ""),
        form.get("role", ""),
        password,
        must_change=True,
        display_name=form.get("display_name"),
    )
    audit("user_created", "user", user.username, role=user.role)
    return _show_secret("password", user.username, password)


@bp.post("/users/<username>/active")
@requires("users")
def set_active(username: str) -> Any:
    user = accounts.get_user(db(), username)
    active = request.form.get("active") == "1"
    who = identity()
    if who is not None and user.id == who.user.id and not active:
        raise accounts.AccountError("You cannot disable your own account.")
    accounts.set_active(db(), user, active)
    audit("user_enabled" if active else "user_disabled", "user", user.username)
    commit()
    flash(f"{user.username} is {'enabled' if active else 'disabled'}.", "info")
    return redirect(url_for("admin.users"), code=303)


@bp.post("/users/<username>/unlock")
@requires("users")
def unlock(username: str) -> Any:
    """Let the user sign in again from the addresses locked after failed attempts."""
    user = accounts.get_user(db(), username)
    lifted = accounts.unlock(db(), user)
    audit("user_unlocked", "user", user.username, addresses=lifted)
    commit()
    flash(f"{user.username} can sign in again from every address.", "info")
    return redirect(url_for("admin.users"), code=303)


@bp.post("/users/<username>/tokens")
@requires("users")
def create_token(username: str) -> Any:
    user = accounts.get_user(db(), username)
    token, text = accounts.create_token(db(), user)
    audit("token_created", "token", token.public_id, user=user.username)
    return _show_secret("token", user.username, text)


@bp.post("/tokens/<public_id>/revoke")
@requires("users")
def revoke_token(public_id: str) -> Any:
    token = accounts.get_token(db(), public_id)
    accounts.revoke_token(token)
    audit("token_revoked", "token", token.public_id, user=token.user.username)
    commit()
    flash(f"Token {token.public_id} is revoked.", "info")
    return redirect(url_for("admin.users"), code=303)


@bp.errorhandler(RequestRefusedError)
@bp.errorhandler(CSRFError)
def form_error(exc: Exception) -> Any:
    """A refused users form: back to the users page with the message (a page's own
    errors, such as a malformed audit search, are answered where they arose)."""
    if request.method != "POST":
        return respond(exc)
    db().rollback()
    flash_form_error(describe(exc)[2])
    return redirect(url_for("admin.users"), code=303)


def _show_secret(kind: str, owner: str, text: str) -> Any:
    """Hold a new secret for this sign-in until the users page shows it (once)."""
    key = held.hold(db(), sign_in_key(), "secret", {"kind": kind, "owner": owner, "text": text})
    commit()
    return redirect(url_for("admin.users", shown=key), code=303)


def _users_page(error: str | None = None, secret: tuple[str, str, str] | None = None) -> str:
    people = accounts.all_users(db())
    tokens = {u.id: accounts.user_tokens(db(), u) for u in people}
    return render_template(
        "admin_users.html",
        people=people,
        tokens=tokens,
        roles=accounts.ROLES,
        locks=accounts.locks(db()),
        error=error,
        secret=secret,
    )


def _audit_page(query: AuditQuery | None, events: list[Any], total: int, **context: Any) -> str:
    pages = max(1, -(-total // PAGE_SIZE))
    args = {k: v for k, v in request.args.items() if k in AUDIT_FILTERS and v}
    return render_template(
        "admin_audit.html",
        query=query,
        events=events,
        total=total,
        pages=pages,
        args=args,
        actions=ACTIONS,
        **context,
    )


def _audit_query() -> AuditQuery:
    args = request.args
    since, until, page = dates_and_page(args)
    action = args.get("action", "")
    if action and action not in ACTIONS:
        raise CaseInputError(f"The action is one of: {', '.join(ACTIONS)}.")
    return AuditQuery(
        actor=args.get("actor", "")[:64],
        action=action,
        object_id=args.get("object", "")[:64],
        since=since,
        until=until,
        page=min(page, MAX_PAGE),
    )


def _filters_text(query: AuditQuery) -> str:
    parts = [
        f"actor={query.actor}" if query.actor else "",
        f"action={query.action}" if query.action else "",
        f"object={query.object_id}" if query.object_id else "",
        f"from={query.since}" if query.since else "",
        f"to={query.until}" if query.until else "",
    ]
    return " ".join(p for p in parts if p) or "all"


def _one_time_password() -> str:
    """A password the new user changes at first sign-in (long, so it meets the policy)."""
    return secrets.token_urlsafe(15)
