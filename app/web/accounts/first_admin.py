"""Development only: the first start makes an admin and prints its one-time password, so a
newcomer's ``make run`` is still one command. Production never has a default account."""

from __future__ import annotations

import secrets
import sys

from flask import Flask
from sqlalchemy.exc import IntegrityError

from app.records import accounts
from app.records.audit import record

USERNAME = "admin"


def ensure_first_admin(app: Flask) -> str | None:
    """Make ``admin`` when the database has no user; the one-time password, else None."""
    sessions = app.extensions["records"].sessions
    with sessions() as session:
        if accounts.any_user(session):
            return None
        password = secrets.token_urlsafe(12)
        try:
            accounts.create_user(session, USERNAME, "admin", password, must_change=True)
            record(session, "user_created", None, None, "user", USERNAME, role="admin", first=True)
            session.commit()
        except IntegrityError:  # another process made it first
            return None
    print(
        "\n".join(
            [
                "",
                "=" * 72,
                "No user existed, so a development admin was made:",
                f"    username: {USERNAME}",
                f"    password: {password}",
                "The password works once: the first sign-in asks you to choose your own.",
                "=" * 72,
                "",
            ]
        ),
        file=sys.stderr,
        flush=True,
    )
    return password
