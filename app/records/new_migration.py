"""Write the next migration from the changes in ``schema.py``.

    python -m app.records.new_migration "what changed"

Alembic compares the tables in ``schema.py`` with a scratch SQLite database brought to
the newest migration, and writes the difference to ``migrations/versions/``: read it,
tidy it and test it before committing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from app.records.database import alembic_config, head_revision, make_engine, upgrade


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'scratch.sqlite3'}")
        upgrade(engine)
        head = head_revision() or "0000"
        number = f"{int(head) + 1:04d}" if head.isdigit() else None
        command.revision(alembic_config(engine), message=argv[0], autogenerate=True, rev_id=number)
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
