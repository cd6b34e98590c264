"""A throwaway PostgreSQL server for tests: its own data folder, a Unix socket, no TCP.

Uses the PostgreSQL binaries on the machine (Debian's ``postgresql`` package); as
root, the server runs as the ``postgres`` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server, yield its SQLAlchemy URL with a ``{database}`` placeholder, stop it."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    run = lambda *cmd: subprocess.run(_as_owner(list(cmd)), check=True, capture_output=True)  # noqa: E731
    try:
        run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        options = f"-c listen_addresses='' -k {socket_dir} -p 5433 -c fsync=off"
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(root / "log"),
            "start",
        )
        yield f"postgresql+psycopg://postgres@/{{database}}?host={socket_dir}&port=5433"
    finally:
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _admin(server_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the server's ``postgres`` database as the superuser."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(server_url.format(database="postgres"))
    host, port = admin.normalized_query["host"][0], admin.normalized_query["port"][0]
    return psycopg.connect(
        dbname="postgres", autocommit=True, host=host, port=port, user="postgres"
    )


@contextmanager
def fresh_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """Create a database on the server, empty or a copy of ``template``, yield its URL, then
    drop it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with _admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield server_url.format(database=name)
    finally:
        with _admin(server_url) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def migrated_template(server_url: str) -> str:
    """The name of a database at the newest schema, made once for ``fresh_database`` to copy."""
    from app.records.database import make_engine, upgrade

    name = "template_migrated"
    with _admin(server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(server_url.format(database=name))
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # PostgreSQL copies a database only while nobody is connected to it
    return name
