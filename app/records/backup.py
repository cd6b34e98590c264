"""A backup of the records: the database and the photographs it names, in one folder, checked
against its manifest, and its restore.

SQLite is copied with its online backup API (a consistent copy while the app runs);
PostgreSQL with ``pg_dump --format=custom`` from a snapshot the backup holds open, and
restored with ``pg_restore --clean`` (both must be on PATH). The photographs copied are
those the copied database names, read from that same snapshot; one deleted meanwhile makes
the attempt start again, and after ``ATTEMPTS`` the backup fails and keeps nothing. The
manifest lists every file with its sha256, so ``verify`` checks a backup without restoring
it. A restore replaces the database and the image store with a verified backup's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import URL, Connection, create_engine, make_url, text

from app.records.database import head_revision
from app.records.image_store import ImageStore
from app.records.photographs import referenced

MANIFEST = "manifest.json"
SQLITE_FILE = "cases.sqlite3"
PG_DUMP = "cases.pgdump"
IMAGES = "images"
# Tries at a backup whose photographs were deleted while it copied them.
ATTEMPTS = 3
# Photographs named in a refusal; the rest are counted.
SHOWN = 5


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
    # Every file of the backup but this manifest, by its path in the folder: its sha256.
    files: dict[str, str] = field(default_factory=dict)


def create(database_url: str, image_root: Path | None, folder: Path) -> Manifest:
    """Write the backup into ``folder``, which must not exist yet. BackupError, with nothing
    left in ``folder``, when a photograph the database names cannot be copied."""
    if folder.exists():
        raise BackupError(f"{folder} exists: a backup goes into a new folder")
    url = make_url(database_url)
    kind = _kind(url)
    names: set[str] = set()
    lacking: list[str] = []
    for _ in range(ATTEMPTS):
        folder.mkdir(parents=True)
        try:
            names = _snapshot(url, kind, folder)
            lacking = _copy_photographs(image_root, names, folder / IMAGES)
            if not lacking:
                return _write_manifest(folder, kind, len(names) if image_root else 0)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        shutil.rmtree(folder)
    raise BackupError(
        f"Of the {len(names)} photographs the database names, {len(lacking)} could not be "
        f"copied from the image store after {ATTEMPTS} attempts ({_first(lacking)}): they were "
        "deleted while the backup ran (run it again once the deletions are done), or they are "
        f"missing or damaged in the store. No backup was kept in {folder}."
    )


def verify(folder: Path) -> tuple[Manifest, list[str]]:
    """The backup's manifest and what is wrong with the backup (nothing when it is sound):
    a file missing, damaged or not listed, or a photograph its database names but lacks."""
    manifest = _load(folder)
    if not manifest.files:
        return manifest, [
            "the manifest lists no files: the backup was made before manifests did, so its "
            "photographs cannot be checked (make a new backup)"
        ]
    problems = [*_listed_problems(folder, manifest), *_unlisted(folder, manifest)]
    if not any(manifest.database_file in p for p in problems):
        listed = {Path(p).name for p in manifest.files if p.startswith(f"{IMAGES}/")}
        try:
            named = _named_in_copy(folder, manifest)
        except BackupError as exc:
            problems.append(str(exc))
        else:
            problems += [
                f"the database names photograph {n}, which the backup lacks"
                for n in sorted(named - listed)
            ]
    return manifest, problems


def restore(database_url: str, image_root: Path | None, folder: Path) -> Manifest:
    """Replace the database and the image store with the backup in ``folder``, once it is
    verified. Stop the app first: a request during the restore would see half of it."""
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
    """The backup's manifest, once the backup is verified; BackupError naming what is wrong.
    A backup made before manifests listed every file is checked by its database alone."""
    manifest = _load(folder)
    if not manifest.files:
        if _sha256(folder / manifest.database_file) != manifest.database_sha256:
            raise BackupError(f"{folder / manifest.database_file} does not match its checksum")
        return manifest
    _, problems = verify(folder)
    if problems:
        raise BackupError(f"the backup in {folder} is not sound: " + "; ".join(problems[:SHOWN]))
    return manifest


def _load(folder: Path) -> Manifest:
    try:
        return Manifest(**json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"{folder} is not a backup: {exc}") from None


def _kind(url: URL) -> str:
    kind = url.get_backend_name()
    if kind not in ("sqlite", "postgresql"):
        raise BackupError(f"cannot back up a {kind} database")
    return kind


def _snapshot(url: URL, kind: str, folder: Path) -> set[str]:
    """The database copied into ``folder``; the photographs that copy names."""
    if kind == "sqlite":
        copy = folder / SQLITE_FILE
        _sqlite_copy(Path(url.database or ""), copy)
        with _read_only_sqlite(copy) as connection:
            return referenced(connection)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                # pg_dump reads the very snapshot this transaction reads its names from.
                snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                _run(
                    [
                        "pg_dump",
                        "--format=custom",
                        "--no-owner",
                        f"--snapshot={snapshot}",
                        f"--file={folder / PG_DUMP}",
                        _libpq(url),
                    ]
                )
                return referenced(connection)
    finally:
        engine.dispose()


def _copy_photographs(image_root: Path | None, names: set[str], target: Path) -> list[str]:
    """Copy the named photographs, checked against their names; those that could not be."""
    if image_root is None:
        return []
    store, copy = ImageStore(image_root), ImageStore(target)
    lacking = []
    for name in sorted(names):
        data = store.get(name)
        if data is None or hashlib.sha256(data).hexdigest() != name:
            lacking.append(name)
            continue
        try:
            copy.put(data)
        except Exception as exc:  # the store says why it cannot write
            raise BackupError(f"cannot write the backup into {target}: {exc}") from None
    return lacking


def _write_manifest(folder: Path, kind: str, photographs: int) -> Manifest:
    files = {
        path.relative_to(folder).as_posix(): _sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    database_file = SQLITE_FILE if kind == "sqlite" else PG_DUMP
    manifest = Manifest(
        made_at=datetime.now(UTC).isoformat(timespec="seconds"),
        database=kind,
        schema_revision=head_revision(),
        database_file=database_file,
        database_sha256=files[database_file],
        photographs=photographs,
        files=files,
    )
    (folder / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def _listed_problems(folder: Path, manifest: Manifest) -> Iterator[str]:
    root = folder.resolve()
    for name, digest in manifest.files.items():
        path = (folder / name).resolve()
        if root not in path.parents:
            yield f"the manifest names {name}, outside the backup"
        elif not path.is_file():
            yield f"{name} is missing"
        elif _sha256(path) != digest:
            yield f"{name} does not match its checksum (damaged or changed)"


def _unlisted(folder: Path, manifest: Manifest) -> Iterator[str]:
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name != MANIFEST and name not in manifest.files:
            yield f"{name} is not in the manifest"


def _named_in_copy(folder: Path, manifest: Manifest) -> set[str]:
    """The photographs the backup's database copy names, read without restoring it."""
    if manifest.database == "sqlite":
        with _read_only_sqlite(folder / manifest.database_file) as connection:
            return referenced(connection)
    done = _run(
        [
            "pg_restore",
            "--data-only",
            "--table=case_fields",
            "--file=-",
            str(folder / manifest.database_file),
        ]
    )
    return _stored_in_copy(done)


def _stored_in_copy(dump: str) -> set[str]:
    """The stored photographs' sha256 in pg_restore's COPY of case_fields."""
    header = re.search(r"^COPY \S+ \((.*)\) FROM stdin;$", dump, re.MULTILINE)
    if header is None:
        return set()
    columns = [c.strip().strip('"') for c in header.group(1).split(",")]
    sha, stored = columns.index("sha256"), columns.index("stored")
    names = set()
    for line in dump[header.end() + 1 :].splitlines():
        if line == "\\.":
            break
        values = line.split("\t")
        if values[stored] == "t":
            names.add(values[sha])
    return names


@contextmanager
def _read_only_sqlite(path: Path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
        # A copy in WAL mode could not be read without writing its -wal and -shm files.
        dst.execute("PRAGMA journal_mode=DELETE")
    src.close()
    dst.close()


def _libpq(url: URL) -> str:
    """The SQLAlchemy URL as libpq's tools take it (no "+psycopg")."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(command: list[str]) -> str:
    """The command's standard output; BackupError when it is missing or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL's client tools)") from None
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
