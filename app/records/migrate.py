"""Migrate the database as its owner, and give the app's own role what serving needs.

    DATABASE_URL=postgresql+psycopg://OWNER:...@db/ball APP_DATABASE_USER=ball_app \\
        APP_DATABASE_PASSWORD=... python -m app.records.migrate

The app then connects as ``APP_DATABASE_USER`` with ``MIGRATE_ON_START=0``: a role that owns
no table, so it can neither drop nor disable a trigger, that reads and writes the records,
and that may only read and append to the audit trail. The role is made when it does not
exist (and given the password when one is set). SQLite has no roles: there it only migrates.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

from sqlalchemy import Connection, Engine, text

from app.records.database import DatabaseError, make_engine, upgrade

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Every table in full but these: the schema's version is the owner's, the trail append-only.
APP_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
READ_AND_APPEND = {"audit_events": "SELECT, INSERT", "alembic_version": "SELECT"}


def main(environ: Mapping[str, str] = os.environ) -> int:
    url = environ.get("DATABASE_URL", "")
    if not url:
        print("Set DATABASE_URL to the database, connecting as its owner.", file=sys.stderr)
        return 2
    role = environ.get("APP_DATABASE_USER", "")
    engine = make_engine(url)
    try:
        revision = upgrade(engine)
        if role:
            provide_app_role(engine, role, environ.get("APP_DATABASE_PASSWORD") or None)
    except DatabaseError as exc:
        print(f"Not migrated: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"the database is at revision {revision}")
    if role:
        print(f"{role} reads and writes the records and only appends to the audit trail")
    return 0


def provide_app_role(engine: Engine, role: str, password: str | None) -> None:
    """Make ``role`` if it is missing and grant it exactly the app's privileges."""
    if engine.dialect.name != "postgresql":
        raise DatabaseError("APP_DATABASE_USER needs PostgreSQL: SQLite has no roles")
    if not ROLE_NAME.match(role):
        raise DatabaseError(f"APP_DATABASE_USER {role!r} is not a plain lower-case role name")
    with engine.begin() as connection:
        _ensure_role(connection, role, password)
        _grant(connection, role)


def _ensure_role(connection: Connection, role: str, password: str | None) -> None:
    found = connection.execute(
        text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :role"),
        {"role": role},
    ).first()
    if found is not None and found[0]:
        raise DatabaseError(f"{role} is a superuser: it could drop the audit trail's triggers")
    if role == connection.execute(text("SELECT current_user")).scalar():
        raise DatabaseError(f"{role} is the owner migrating: the app needs a role of its own")
    if found is None:
        connection.exec_driver_sql(
            f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
        )
    if password is not None:
        # format() quotes the password as a literal; it never passes through Python's text.
        statement = connection.execute(
            text(
                "SELECT format('ALTER ROLE %I PASSWORD %L', "
                "CAST(:role AS text), CAST(:password AS text))"
            ),
            {"role": role, "password": password},
        ).scalar_one()
        connection.exec_driver_sql(statement)


def _grant(connection: Connection, role: str) -> None:
    """Start from nothing each time, so a privilege given by hand does not linger."""
    database = connection.execute(text("SELECT quote_ident(current_database())")).scalar_one()
    statements = [
        f'GRANT CONNECT ON DATABASE {database} TO "{role}"',
        f'GRANT USAGE ON SCHEMA public TO "{role}"',
        f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"',
        f'GRANT {APP_PRIVILEGES} ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    ]
    for table, privileges in READ_AND_APPEND.items():
        statements.append(f'REVOKE ALL ON {table} FROM "{role}"')
        statements.append(f'GRANT {privileges} ON {table} TO "{role}"')
    for statement in statements:
        connection.exec_driver_sql(statement)


if __name__ == "__main__":
    raise SystemExit(main())
