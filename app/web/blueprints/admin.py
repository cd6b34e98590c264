"""Administration: the audit trail (filters, pages, CSV) and the users with their API tokens.

The audit trail is only ever read here: no route changes or removes an event.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from app.records import accounts
from app.records.audit import ACTIONS, PAGE_SIZE, AuditQuery, all_events, events_csv, search_events
from app.records.cases import CaseInputError
from app.web.auth import audit, identity, requires
from app.web.records import commit, db
from app.web.search_args import dates_and_page

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/audit")
@requires("audit")
def audit_trail() -> tuple[str, int]:
    try:
        query = _audit_query()
    except CaseInputError as exc:
        return _audit_page(None, [], 0, error=exc.message), 422
    events, total = search_events(db(), query)
    return _audit_page(query, events, total), 200


@bp.get("/audit.csv")
@requires("audit")
def audit_csv() -> Response:
    query = _audit_query()
    text = events_csv(all_events(db(), query))
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
    return _users_page(), 200


@bp.post("/users")
@requires("users")
def create_user() -> Any:
    form = request.form
    password = _one_time_password()
    try:
        user = accounts.create_user(
            db(), form.get("username", ""), form.get("role", ""), password, must_change=True
        )
    except accounts.AccountError as exc:
        return _users_page(error=exc.message), exc.status
    audit("user_created", "user", user.username, role=user.role)
    commit()
    return _users_page(secret=("password", user.username, password)), 201


@bp.post("/users/<username>/active")
@requires("users")
def set_active(username: str) -> Any:
    user = accounts.get_user(db(), username)
    active = request.form.get("active") == "1"
    who = identity()
    if who is not None and user.id == who.user.id and not active:
        return _users_page(error="You cannot disable your own account."), 409
    accounts.set_active(db(), user, active)
    audit("user_enabled" if active else "user_disabled", "user", user.username)
    commit()
    flash(f"{user.username} is {'enabled' if active else 'disabled'}.", "info")
    return redirect(url_for("admin.users"))


@bp.post("/users/<username>/tokens")
@requires("users")
def create_token(username: str) -> Any:
    user = accounts.get_user(db(), username)
    token, text = accounts.create_token(db(), user)
    audit("token_created", "token", token.public_id, user=user.username)
    commit()
    return _users_page(secret=("token", user.username, text)), 201


@bp.post("/tokens/<public_id>/revoke")
@requires("users")
def revoke_token(public_id: str) -> Any:
    token = accounts.get_token(db(), public_id)
    accounts.revoke_token(token)
    audit("token_revoked", "token", token.public_id, user=token.user.username)
    commit()
    flash(f"Token {token.public_id} is revoked.", "info")
    return redirect(url_for("admin.users"))


def _users_page(error: str | None = None, secret: tuple[str, str, str] | None = None) -> str:
    people = accounts.all_users(db())
    tokens = {u.id: accounts.user_tokens(db(), u) for u in people}
    return render_template(
        "admin_users.html",
        people=people,
        tokens=tokens,
        roles=accounts.ROLES,
        locked=accounts.locked,
        error=error,
        secret=secret,
    )


def _audit_page(query: AuditQuery | None, events: list[Any], total: int, **context: Any) -> str:
    pages = max(1, -(-total // PAGE_SIZE))
    args = {k: v for k, v in request.args.items() if k != "page" and v}
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
        page=page,
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
