"""The audit trail's integrity on real SQLite files and a real PostgreSQL server: the
database refuses every rewrite (UPDATE, DELETE, REPLACE, upserts, TRUNCATE), every event
is chained to the one before it, the chain finds the first tampered event, concurrent
writers append to one chain, and migration 0009 chains the events already stored."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from app.records import audit_chain
from app.records.audit import record
from app.records.database import alembic_config, session_factory, upgrade
from tests.support.audit import tamper

# The rewrites the attack used (finding 7), and the other ways SQL can overwrite a row.
SQLITE_REWRITES = (
    "INSERT OR REPLACE INTO audit_events (id, at, actor, action, detail, hash) "
    "VALUES (1, CURRENT_TIMESTAMP, 'mallory', 'login', '{}', 'x')",
    "REPLACE INTO audit_events "
    "(id, at, actor, action, object_type, object_id, address, detail, hash) "
    "SELECT id, at, 'mallory', action, object_type, object_id, address, detail, hash "
    "FROM audit_events",
    "INSERT INTO audit_events (id, at, actor, action, detail, hash) "
    "VALUES (1, CURRENT_TIMESTAMP, 'mallory', 'login', '{}', 'x') "
    "ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
    "UPDATE OR REPLACE audit_events SET actor = 'mallory'",
)
POSTGRESQL_REWRITES = (
    "TRUNCATE audit_events",
    "TRUNCATE audit_events RESTART IDENTITY CASCADE",
    "INSERT INTO audit_events (id, at, actor, action, detail, hash) "
    "VALUES (1, now(), 'mallory', 'login', '{}', 'x') "
    "ON CONFLICT (id) DO UPDATE SET actor = 'mallory'",
)
EVERYWHERE = ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events")


def write_events(engine: Engine, count: int, actor: str = "admin") -> None:
    with session_factory(engine)() as session:
        for n in range(count):
            record(session, "case_viewed", actor, "192.0.2.7", "case", f"c{n}", n=n)
        session.commit()


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text("SELECT id, actor, hash FROM audit_events ORDER BY id")
            )
        ]


def check(engine: Engine) -> audit_chain.ChainCheck:
    with session_factory(engine)() as session:
        return audit_chain.verify(session)


def test_the_database_refuses_every_rewrite_of_an_event(engine: Engine) -> None:
    upgrade(engine)
    write_events(engine, 3)
    before = stored(engine)
    own = SQLITE_REWRITES if engine.dialect.name == "sqlite" else POSTGRESQL_REWRITES
    for statement in (*own, *EVERYWHERE):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    assert stored(engine) == before
    assert check(engine).ok


def test_each_event_is_chained_and_the_first_tampered_one_is_found(engine: Engine) -> None:
    upgrade(engine)
    write_events(engine, 5)
    found = check(engine)
    assert found.ok
    assert found.events == 5
    assert found.head == stored(engine)[-1][2]
    tamper(engine, "UPDATE audit_events SET actor = 'mallory' WHERE id = 3")
    assert check(engine).broken_at == 3
    tamper(engine, "UPDATE audit_events SET actor = 'admin' WHERE id = 3")
    assert check(engine).ok  # put back as it was, the chain holds again
    tamper(engine, "DELETE FROM audit_events WHERE id = 2")
    assert check(engine).broken_at == 3  # a removed event breaks the link of the next one


def test_a_copied_hash_does_not_hide_a_change(engine: Engine) -> None:
    upgrade(engine)
    write_events(engine, 3)
    tamper(
        engine,
        "UPDATE audit_events SET address = '198.51.100.1', "
        "hash = (SELECT hash FROM audit_events WHERE id = 3) WHERE id = 2",
    )
    assert check(engine).broken_at == 2


def test_concurrent_writers_append_to_one_chain(engine: Engine) -> None:
    upgrade(engine)
    writers, each = 8, 5
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            for _ in range(each):
                write_events(engine, 1, actor=f"writer{n}")
        except BaseException as exc:  # the test reports it
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    ids = [row[0] for row in stored(engine)]
    assert ids == list(range(1, writers * each + 1))
    assert check(engine).ok


def test_a_rolled_back_transaction_leaves_no_event(engine: Engine) -> None:
    upgrade(engine)
    with session_factory(engine)() as session:
        record(session, "login", "admin")
        session.rollback()
        session.commit()
    assert stored(engine) == []


def test_0009_chains_the_events_already_stored(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "0008")
    with engine.begin() as connection:
        for n in range(3):
            connection.execute(
                text(
                    "INSERT INTO audit_events (at, actor, action, object_id, detail) "
                    "VALUES (:at, 'admin', 'case_viewed', :object, :detail)"
                ),
                {"at": f"2026-11-2{n} 09:00:00.00012{n}", "object": f"c{n}", "detail": '{"n": 1}'},
            )
    upgrade(engine)
    found = check(engine)
    assert found.ok
    assert found.events == 3
    write_events(engine, 1)  # new events carry on the old ones' chain
    assert check(engine).ok
    assert check(engine).events == 4
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'mallory'"))
    command.downgrade(alembic_config(engine), "0008")
    assert "hash" not in {c["name"] for c in sa.inspect(engine).get_columns("audit_events")}
