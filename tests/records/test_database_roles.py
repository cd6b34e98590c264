"""The app's own database role (finding 7): migrated by the owner with
``python -m app.records.migrate``, the app connects as a role that owns no table, cannot
drop or disable the audit trail's triggers and may only read and append to the trail; an
app that does not migrate itself refuses to start on a schema that is not current."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.core.model_card import ModelCard
from app.records import audit_chain, migrate
from app.records.audit import record
from app.records.cases import new_case
from app.records.database import DatabaseError, make_engine, session_factory
from tests.support.accounts import admin_client

APP_ROLE = "ball_app"
# What an intruder holding the app's connection would try (finding 7 and beyond).
INTRUSIONS = (
    "UPDATE audit_events SET actor = 'mallory'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events",
    "DROP TRIGGER audit_events_append_only ON audit_events",
    "DROP TRIGGER audit_events_no_truncate ON audit_events",
    "ALTER TABLE audit_events DISABLE TRIGGER USER",
    "DROP TABLE audit_events",
    "SET session_replication_role = replica",
    "UPDATE alembic_version SET version_num = '0001'",
    "CREATE TABLE shadow (id integer)",
    "ALTER ROLE ball_app SUPERUSER",
)


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def migrated(owner_url: str) -> int:
    env = {"DATABASE_URL": owner_url, "APP_DATABASE_USER": APP_ROLE, "APP_DATABASE_PASSWORD": "pw"}
    return migrate.main(env)


@pytest.fixture
def app_engine(postgres_url: str) -> Iterator[Engine]:
    assert migrated(postgres_url) == 0
    engine = make_engine(as_role(postgres_url, APP_ROLE))
    yield engine
    engine.dispose()


def test_the_app_role_keeps_the_records_and_only_appends_to_the_audit_trail(
    app_engine: Engine, postgres_url: str
) -> None:
    with session_factory(app_engine)() as session:
        new_case(session, "ROLE-1", "", ModelCard(name="lenet", version="1.3.0", input_size=224))
        record(session, "case_created", "admin", "192.0.2.1", "case", "x")
        session.commit()
    for statement in INTRUSIONS:
        with pytest.raises(DBAPIError, match="InsufficientPrivilege|append-only"):
            with app_engine.begin() as connection:
                connection.execute(text(statement))
    owner = make_engine(postgres_url)
    with owner.connect() as connection:
        owned = connection.execute(
            text("SELECT count(*) FROM pg_tables WHERE tableowner = :role"), {"role": APP_ROLE}
        ).scalar()
        powers = connection.execute(
            text("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = :r"),
            {"r": APP_ROLE},
        ).one()
    owner.dispose()
    assert owned == 0
    assert tuple(powers) == (False, False, False)
    with session_factory(app_engine)() as session:
        assert audit_chain.verify(session).events == 1


def test_migrating_again_keeps_the_role_and_takes_back_what_was_granted_by_hand(
    app_engine: Engine, postgres_url: str
) -> None:
    owner = make_engine(postgres_url)
    with owner.begin() as connection:
        connection.execute(text(f"GRANT UPDATE, DELETE, TRUNCATE ON audit_events TO {APP_ROLE}"))
    owner.dispose()
    assert migrated(postgres_url) == 0
    with pytest.raises(DBAPIError, match="permission denied"), app_engine.begin() as connection:
        connection.execute(text("TRUNCATE audit_events"))


@pytest.mark.parametrize(("role", "says"), [("postgres", "superuser"), ("Bad-Name", "plain")])
def test_an_app_role_that_could_undo_the_triggers_is_refused(
    postgres_url: str, capsys, role: str, says: str
) -> None:
    env = {"DATABASE_URL": postgres_url, "APP_DATABASE_USER": role}
    assert migrate.main(env) == 1
    assert says in capsys.readouterr().err


def test_an_app_that_does_not_migrate_needs_a_current_schema(
    app_config, inference_service, postgres_url: str, tmp_path: Path
) -> None:
    from app import create_app

    fresh = {**app_config, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"}
    with pytest.raises(DatabaseError, match=r"revision none.*python -m app.records.migrate"):
        create_app({**fresh, "MIGRATE_ON_START": False}, inference=inference_service)

    assert migrated(postgres_url) == 0
    served = {**app_config, "DATABASE_URL": as_role(postgres_url, APP_ROLE)}
    app = create_app({**served, "MIGRATE_ON_START": False}, inference=inference_service)
    client = admin_client(app)  # the test users and token, written as the app's role
    assert client.get("/api/v1/cases").status_code == 200
    assert client.get("/admin/audit.csv").status_code == 200  # read, and the export audited
    verified = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert verified.exit_code == 0
    assert "OK: 1 events" in verified.output
    app.extensions["records"].engine.dispose()
