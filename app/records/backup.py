"""A backup of the records: the database and the image store, in one folder, and its restore.

SQLite is copied with its online backup API (a consistent copy while the app runs);
PostgreSQL with ``pg_dump --format=custom`` and restored with ``pg_restore --clean``
(both must be on PATH). The database is copied first and the photographs second: a
photograph is stored before its case is committed, so every photograph the copied database
names is in the copy. A restore replaces the database and the image store with the backup's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import URL, make_url

from app.records.database import head_revision

MANIFEST = "manifest.json"
SQLITE_FILE = "cases.sqlite3"
PG_DUMP = "cases.pgdump"
IMAGES = "images"


class BackupError(RuntimeError):
    """The backup cannot be made or restored; the message says why."""


@dataclass(frozen=True)
class Manifest:
    made_at: str
    database: str  # "sqlite" or "postgresql"
    schema_revision: str | None
    database_file: str
    database_sha256: str
    photographs: int


def create(database_url: str, image_root: Path | None, folder: Path) -> Manifest:
    """Write the backup into ``folder``, which must not exist yet."""
    if folder.exists():
        raise BackupError(f"{folder} exists: a backup goes into a new folder")
    folder.mkdir(parents=True)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        kind, name = "sqlite", SQLITE_FILE
        _sqlite_copy(Path(url.database or ""), folder / name)
    elif url.get_backend_name() == "postgresql":
        kind, name = "postgresql", PG_DUMP
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={folder / name}", _libpq(url)])
    else:
        raise BackupError(f"cannot back up a {url.get_backend_name()} database")
    count = 0
    if image_root is not None and image_root.is_dir():
        shutil.copytree(image_root, folder / IMAGES)
        count = sum(1 for p in (folder / IMAGES).rglob("*") if p.is_file())
    manifest = Manifest(
        made_at=datetime.now(UTC).isoformat(timespec="seconds"),
        database=kind,
        schema_revision=head_revision(),
        database_file=name,
        database_sha256=_sha256(folder / name),
        photographs=count,
    )
    (folder / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def restore(database_url: str, image_root: Path | None, folder: Path) -> Manifest:
    """Replace the database and the image store with the backup in ``folder``.

    Stop the app first: a request during the restore would see half of it."""
    manifest = read(folder)
    url = make_url(database_url)
    if url.get_backend_name() != manifest.database:
        raise BackupError(
            f"the backup is of a {manifest.database} database, DATABASE_URL is "
            f"{url.get_backend_name()}"
        )
    if manifest.database == "sqlite":
        _sqlite_copy(folder / manifest.database_file, Path(url.database or ""))
    else:
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={_libpq(url)}",
                str(folder / manifest.database_file),
            ]
        )
    if image_root is not None:
        if image_root.exists():
            shutil.rmtree(image_root)
        if (folder / IMAGES).is_dir():
            shutil.copytree(folder / IMAGES, image_root)
        else:
            image_root.mkdir(parents=True)
    return manifest


def read(folder: Path) -> Manifest:
    """The backup's manifest, after checking that its database copy is intact."""
    try:
        manifest = Manifest(**json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"{folder} is not a backup: {exc}") from None
    if _sha256(folder / manifest.database_file) != manifest.database_sha256:
        raise BackupError(f"{folder / manifest.database_file} does not match its checksum")
    return manifest


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def _libpq(url: URL) -> str:
    """The SQLAlchemy URL as libpq's tools take it (no "+psycopg")."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL's client tools)") from None
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
