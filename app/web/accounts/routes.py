"""Signing in and out, and changing one's own password.

Every form answers with a redirect (303) to a page, its errors too (the message flashed),
so Back, Forward and reload never send a password again.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from app.records import accounts
from app.web.auth import (
    Identity,
    actor,
    address,
    audit,
    identity,
    is_local_path,
    limiter,
    permission_of,
    public,
    requires,
    sign_in,
    sign_out,
)
from app.web.errors import describe, flash_form_error, flashed_form_error, respond
from app.web.records import commit, db

bp = Blueprint("auth", __name__)


def _per_address() -> str:
    return str(current_app.config["LOGIN_RATE_PER_ADDRESS"])


def _per_account() -> str:
    return str(current_app.config["LOGIN_RATE_PER_ACCOUNT"])


def _account_key() -> str:
    """One account from one address: an attacker's flood must not throttle the owner."""
    typed = request.form.get("username", "").strip().lower()
    return f"account:{typed}@{address()}"


@bp.get("/login")
@public
def login() -> Any:
    if identity() is not None:
        return redirect(_next_page())
    error, _ = flashed_form_error()
    typed = get_flashed_messages(category_filter=[USERNAME])
    return _login_page(error=error, username=typed[-1] if typed else ""), 200


@bp.post("/login")
@public
@limiter.limit(_per_address, methods=["POST"])
@limiter.limit(_per_account, key_func=_account_key, methods=["POST"])
def login_post() -> Any:
    username = request.form.get("username", "").strip().lower()
    password = request.form.get("password", "")
    try:
        user = accounts.authenticate(db(), username, password, address())
    except accounts.LoginError as exc:
        audit("login_failed", "user", username[:64], reason=exc.code)
        commit()  # the failure count and the event are kept although the sign-in is refused
        flash(username[:64], USERNAME)  # typed again by no one: the form keeps it
        flash_form_error(exc.message)
        return redirect(_login_url(), code=303)
    sign_in(user)
    audit("login", "user", user.username)
    commit()
    if user.must_change_password:
        flash("Choose your own password before you go on.", "info")
        return redirect(url_for("auth.password"), code=303)
    return redirect(_next_page(), code=303)


@bp.post("/logout")
@requires("read")
def logout() -> Any:
    audit("logout", "user", actor())
    sign_out()
    commit()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/account/password", methods=["GET", "POST"])
@requires("read")
@limiter.limit(_per_address, methods=["POST"])
def password() -> Any:
    who = identity()
    assert who is not None  # the identity check ran first
    if request.method == "GET":
        error, _ = flashed_form_error()
        page = render_template("password.html", minimum=accounts.MIN_PASSWORD, error=error)
        return page, 200
    current = request.form.get("current", "")
    new = request.form.get("new", "")
    error = None
    if not accounts.check_password_hash_of(who.user, current):
        error = "The current password is wrong."
    elif new != request.form.get("confirm", ""):
        error = "The two new passwords differ."
    else:
        try:
            accounts.set_password(db(), who.user, new)
        except accounts.PasswordPolicyError as exc:
            error = exc.message
    if error is not None:
        flash_form_error(error)
        return redirect(url_for("auth.password"), code=303)
    user = who.user
    audit("password_changed", "user", user.username)
    sign_in(user)  # every other sign-in of the user ended with the old password
    commit()
    flash("Your password is changed.", "info")
    return redirect(home_page(identity()), code=303)


@bp.errorhandler(CSRFError)
@bp.errorhandler(RateLimitExceeded)
def form_error(exc: HTTPException) -> Any:
    """A refused sign-in or password form: back to its page, with the message."""
    if request.method != "POST":
        return respond(exc)
    if request.endpoint == "auth.logout":  # no form of its own: say it on the home page
        flash(describe(exc)[2] + " You are still signed in.", "error")
        return redirect(home_page(identity()), code=303)
    signing_in = request.endpoint == "auth.login_post"
    if isinstance(exc, RateLimitExceeded):
        what = "sign-in attempts" if signing_in else "attempts"
        flash_form_error(f"Too many {what}: wait a minute and try again.")
    else:
        flash_form_error(describe(exc)[2])
    target = _login_url() if signing_in else request.path
    return redirect(target, code=303)


# Flash category of the username a refused sign-in typed, for the form to keep.
USERNAME = "form-username"


def _login_page(**context: Any) -> str:
    return render_template(
        "login.html", next_page=_asked_page() or "", lock_after=accounts.LOCK_AFTER, **context
    )


def _login_url() -> str:
    asked = _asked_page()
    return url_for("auth.login", next=asked) if asked else url_for("auth.login")


def home_page(who: Identity | None) -> str:
    """Where a role starts: the quick check if it may analyse, else the case list."""
    return url_for("cases.index" if who and not who.can("analyse") else "analysis.index")


def _next_page() -> str:
    """The page to go to after signing in: the one asked for, if it is on this site and
    the user may open it, else the role's home (never a 403, never another site)."""
    asked, who = _asked_page(), identity()
    if asked and who is not None and _may_open(who, asked):
        return asked
    return home_page(who)


def _asked_page() -> str | None:
    """The local page named by ``next`` (never another site)."""
    target = request.values.get("next", "")
    return target if is_local_path(target) else None


def _may_open(who: Identity, path: str) -> bool:
    """Whether the page at ``path`` (a GET) is open to the user's role."""
    adapter = current_app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path.split("?")[0], method="GET")
    except (NotFound, MethodNotAllowed, RequestRedirect):
        return False
    permission = permission_of(current_app, str(endpoint))
    return permission is not None and (permission == "public" or who.can(permission))
