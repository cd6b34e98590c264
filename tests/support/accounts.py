"""Test users: one per role, written straight into a test database; sign-ins and tokens made
the app's way. Their passwords are hashed once a session at a low scrypt cost (the cost is
stored in the hash, so checking one is as cheap): scrypt is slow on purpose, and the tests
sign in and check passwords hundreds of times; an unknown name is checked at the same cost
(``accounts.unknown_name_hash``). ``full_cost`` gives them the app's own cost, for tests
that time a sign-in, where the hash must outweigh everything else."""

from __future__ import annotations

import functools
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.records import accounts
from app.records.database import make_engine, session_factory, upgrade
from app.records.schema import User

ROLES = accounts.ROLES
PASSWORDS = {role: f"{role} password for the tests" for role in ROLES}


# Werkzeug's default is scrypt with n = 2**15; 2**10 is 32 times cheaper to check.
TEST_HASH_METHOD = "scrypt:1024:8:1"


@functools.cache
def password_hash(role: str, full_cost: bool = False) -> str:
    if full_cost:
        return generate_password_hash(PASSWORDS[role])
    return generate_password_hash(PASSWORDS[role], method=TEST_HASH_METHOD)


def add_users(session: Session, full_cost: bool = False) -> dict[str, User]:
    """A user per role, named after it (admin, clinician, viewer); made once per database."""
    found = {u.username: u for u in session.scalars(select(User))}
    for role in ROLES:
        if role not in found:
            hashed = password_hash(role, full_cost)
            found[role] = User(username=role, role=role, password_hash=hashed)
            session.add(found[role])
    session.flush()
    return {role: found[role] for role in ROLES}


def app_users(app: Flask, full_cost: bool = False) -> None:
    with app.extensions["records"].sessions() as session:
        add_users(session, full_cost)
        session.commit()


def token_for(app: Flask, role: str) -> str:
    """A new API token for the role's test user."""
    with app.extensions["records"].sessions() as session:
        user = add_users(session)[role]
        _, text = accounts.create_token(session, user)
        session.commit()
    return text


def signed_in(client: FlaskClient, role: str) -> FlaskClient:
    """``client`` signed in as the role's user through a real sign-in record (the login
    form itself is tested on its own; this skips only the password's hashing)."""
    app = client.application
    with app.extensions["records"].sessions() as session:
        user = add_users(session)[role]
        key = accounts.start_session(session, user)
        session.commit()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = key
        cookie["_fresh"] = True
    return client


def with_token(client: FlaskClient, token: str) -> FlaskClient:
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def provision(database_url: str) -> str:
    """Bring a server's database up to date, add the test users, and return an admin token
    (for a gunicorn the tests start)."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with session_factory(engine)() as session:
            user = add_users(session)["admin"]
            _, text = accounts.create_token(session, user)
            session.commit()
    finally:
        engine.dispose()
    return text


def form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def admin_client(app: Flask) -> FlaskClient:
    """A client of ``app`` signed in as the test admin, with an admin API token."""
    return with_token(signed_in(app.test_client(), "admin"), token_for(app, "admin"))
