"""Tampering with the audit trail as only its database's owner, or the holder of its
SQLite file, could: the append-only triggers set aside for one statement."""

from __future__ import annotations

from sqlalchemy import Engine, text


def tamper(engine: Engine, statement: str) -> None:
    """What only the database's owner or the file's holder can do: change a row with the
    append-only triggers out of the way (as a superuser could, or a copy of the file)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            connection.execute(text(statement))
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            triggers = connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            ).all()
            for name, _ in triggers:
                connection.execute(text(f"DROP TRIGGER {name}"))
            connection.execute(text(statement))
            for _, sql in triggers:
                connection.execute(text(sql))
