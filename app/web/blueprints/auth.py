"""Signing in and out, and changing one's own password."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from app.records import accounts
from app.web.auth import actor, audit, identity, limiter, public, requires, sign_in, sign_out
from app.web.records import commit, db

bp = Blueprint("auth", __name__)


def _per_address() -> str:
    return str(current_app.config["LOGIN_RATE_PER_ADDRESS"])


def _per_account() -> str:
    return str(current_app.config["LOGIN_RATE_PER_ACCOUNT"])


def _account_key() -> str:
    return "account:" + request.form.get("username", "").strip().lower()


@bp.get("/login")
@public
def login() -> Any:
    if identity() is not None:
        return redirect(_next_page())
    return _login_page(), 200


@bp.post("/login")
@public
@limiter.limit(_per_address, methods=["POST"])
@limiter.limit(_per_account, key_func=_account_key, methods=["POST"])
def login_post() -> Any:
    username = request.form.get("username", "").strip().lower()
    password = request.form.get("password", "")
    try:
        user = accounts.authenticate(db(), username, password)
    except accounts.LoginError as exc:
        audit("login_failed", "user", username[:64], reason=exc.code)
        commit()  # the failure count and the event are kept although the answer is 401
        return _login_page(error=exc.message, username=username), 401
    sign_in(user)
    audit("login", "user", user.username)
    commit()
    if user.must_change_password:
        flash("Choose your own password before you go on.", "info")
        return redirect(url_for("auth.password"))
    return redirect(_next_page())


@bp.post("/logout")
@requires("read")
def logout() -> Any:
    audit("logout", "user", actor())
    sign_out()
    commit()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@requires("read")
@limiter.limit(_per_address, methods=["POST"])
def password() -> Any:
    who = identity()
    assert who is not None  # the identity check ran first
    if request.method == "GET":
        return render_template("password.html", minimum=accounts.MIN_PASSWORD), 200
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
        page = render_template("password.html", minimum=accounts.MIN_PASSWORD, error=error)
        return page, 422
    user = who.user
    audit("password_changed", "user", user.username)
    sign_in(user)  # every other sign-in of the user ended with the old password
    commit()
    flash("Your password is changed.", "info")
    return redirect(url_for("analysis.index"))


def _login_page(**context: Any) -> str:
    return render_template(
        "login.html", next_page=_next_page(), lock_after=accounts.LOCK_AFTER, **context
    )


def _next_page() -> str:
    """The local page to go to after signing in (never another site)."""
    target = request.values.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    who = identity()
    return url_for("cases.index" if who and not who.can("analyse") else "analysis.index")
