"""Alembic's environment: the engine comes from ``app.records.database.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from app.records import held  # noqa: F401  # its table belongs to the metadata compared
from app.records.schema import Base

engine: Engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
