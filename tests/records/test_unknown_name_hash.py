"""An unknown name's password is checked against a hash made as the stored ones were, so
signing in as nobody costs what a wrong password costs, whatever cost the users' hashes
carry (the tests' cheap ones, an operator's stronger ones)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.records import accounts
from app.records.schema import User

CHEAP = "scrypt:1024:8:1"
STRONGER = "scrypt:65536:8:1"


def method_of(hashed: str) -> str:
    return hashed.split("$", 1)[0]


def test_with_no_user_the_stand_in_is_werkzeugs_default(migrated_engine: Engine) -> None:
    with Session(migrated_engine) as session:
        assert method_of(accounts.unknown_name_hash(session)) == "scrypt:32768:8:1"


def test_the_stand_in_follows_the_newest_users_hash(migrated_engine: Engine) -> None:
    with Session(migrated_engine) as session:
        session.add(User(username="old", role="viewer", password_hash=_hash(CHEAP)))
        session.flush()
        assert method_of(accounts.unknown_name_hash(session)) == CHEAP
        session.add(User(username="new", role="viewer", password_hash=_hash(STRONGER)))
        session.flush()
        stand_in = accounts.unknown_name_hash(session)
    assert method_of(stand_in) == STRONGER
    assert not check_password_hash(stand_in, "")


def test_a_hash_of_an_unknown_scheme_falls_back_to_the_default(migrated_engine: Engine) -> None:
    with Session(migrated_engine) as session:
        session.add(User(username="odd", role="viewer", password_hash="md5$salt$0123"))
        session.flush()
        assert method_of(accounts.unknown_name_hash(session)) == "scrypt:32768:8:1"


def _hash(method: str) -> str:
    return generate_password_hash("a password of the tests", method=method)
