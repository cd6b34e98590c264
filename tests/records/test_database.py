"""Migrations and case records on real databases: SQLite files and a PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect, select

from app.core.model_card import ModelCard
from app.records.cases import CaseInputError, ReviewInput, add_review, delete_case, new_case
from app.records.database import (
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from app.records.image_store import ImageStore
from app.records.schema import Case
from tests.support.accounts import admin_client

CARD = ModelCard(name="lenet", version="1.3.0", input_size=224)


def test_a_fresh_sqlite_file_is_brought_to_the_newest_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'cases.sqlite3'}")
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision() is not None
    assert {"cases", "case_fields", "reviews", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    assert upgrade(engine) == head_revision()  # a second start changes nothing


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    results: list[object] = []

    def start() -> None:
        try:
            results.append(upgrade(make_engine(url)))
        except Exception as exc:  # the test reports it
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [head_revision()] * 4


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        new_case(session, "S-1", "", CARD)
        session.flush()
        case = session.scalars(select(Case)).one()
        with pytest.raises(CaseInputError):
            add_review(session, case, ReviewInput("agree", None, "", sign_off=True))
        session.rollback()
    with sessions() as session:
        assert session.scalars(select(Case)).all() == []


def test_the_image_store_keeps_one_file_per_content_and_removes_empty_folders(
    tmp_path: Path,
) -> None:
    store = ImageStore(tmp_path / "store")
    sha = store.put(b"photograph")
    assert store.put(b"photograph") == sha
    assert store.get(sha) == b"photograph"
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == [sha]
    store.delete(sha)
    assert store.get(sha) is None
    assert list((tmp_path / "store").iterdir()) == []
    with pytest.raises(ValueError, match="not a sha256"):
        store.path("../../etc/passwd")


def test_a_stored_photograph_is_on_disk_before_its_name_and_its_name_before_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case that refers to a photograph is committed durably (SQLite's full sync), so
    the photograph must be too: its bytes synced before the rename makes it visible, and
    the folders that gained a name synced after."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: Path) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "store"
    root.mkdir()
    store = ImageStore(root)
    sha = store.put(b"photograph")
    target = store.path(sha)
    partial_synced, renamed, *folders = events
    assert partial_synced[0] == "sync"
    assert Path(partial_synced[1]).name.startswith(".partial-")
    assert renamed == ("rename", str(target))
    assert sorted(folders) == sorted(("sync", str(f)) for f in (target.parent, root))
    events.clear()
    twin = b"photograph 2"
    while store.path(hashlib.sha256(twin).hexdigest()).parent != target.parent:
        twin += b"."  # a photograph in the same folder: only that folder gains a name
    store.put(twin)
    assert [kind for kind, _ in events] == ["sync", "rename", "sync"]
    assert events[-1] == ("sync", str(target.parent))
    events.clear()
    store.put(b"photograph")  # stored already: nothing written, nothing synced
    assert events == []


def test_a_put_makes_its_folder_again_when_a_deletion_removes_it_before_the_file_is_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put makes the folders it finds missing, and makes its folder again if a deletion
    removes it (emptied) before the file is in it; where its folder is there, no mkdir."""
    mkdirs: list[Path] = []
    synced: list[str] = []
    real_mkdir, real_mkstemp, real_fsync = Path.mkdir, tempfile.mkstemp, os.fsync

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        mkdirs.append(self)
        real_mkdir(self, *args, **kwargs)

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "fsync", fsync)
    root = tmp_path / "store"
    store = ImageStore(root)
    sha = store.put(b"the first photograph")  # neither the root nor its folder was there
    folder = store.path(sha).parent
    assert mkdirs == [root, folder]
    assert synced[1:] == [str(folder), str(tmp_path), str(root)]

    mkdirs.clear()
    twin = b"a twin"
    while store.path(hashlib.sha256(twin).hexdigest()).parent != folder:
        twin += b"."
    store.put(twin)
    assert mkdirs == []

    other = b"elsewhere"
    while store.path(hashlib.sha256(other).hexdigest()).parent == folder:
        other += b"."
    target = store.path(hashlib.sha256(other).hexdigest())
    real_mkdir(target.parent)
    emptied: list[Path] = []

    def mkstemp(**kwargs: Any) -> tuple[int, str]:
        if target.parent.is_dir() and not emptied:
            target.parent.rmdir()  # a deletion removes the folder it left empty
            emptied.append(Path(kwargs["dir"]))
        return real_mkstemp(**kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    mkdirs.clear()
    synced.clear()
    assert store.get(store.put(other)) == other
    assert emptied == [target.parent]
    assert mkdirs == [root, target.parent]
    assert synced[1:] == [str(target.parent), str(root)]


def test_photographs_of_the_older_two_level_layout_are_found_kept_and_removed_in_place(
    tmp_path: Path,
) -> None:
    store = ImageStore(tmp_path / "store")
    data = b"a photograph stored before the layout changed"
    sha = hashlib.sha256(data).hexdigest()
    old = tmp_path / "store" / sha[:2] / sha[2:4] / sha
    old.parent.mkdir(parents=True)
    old.write_bytes(data)
    os.utime(old, (1, 1))
    assert store.path(sha) == tmp_path / "store" / sha[:2] / sha
    assert store.get(sha) == data
    assert store.is_photograph(old)
    assert store.put(data) == sha  # stored already: touched where it is, not copied
    assert not store.path(sha).exists()
    assert old.stat().st_mtime > 1
    new = store.put(b"a photograph stored after")
    assert store.path(new).is_file()
    assert sorted(p.name for p in store.files()) == sorted([sha, new])
    store.delete(sha)
    assert store.get(sha) is None
    assert not old.parent.exists()  # its emptied folder went with it
    assert store.get(new) == b"a photograph stored after"


def test_postgresql_migrates_and_keeps_cases(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    assert upgrade(engine) == head_revision()
    assert upgrade(engine) == head_revision()
    sessions = session_factory(engine)
    with sessions() as session:
        case = new_case(session, "PG-1", "note", CARD)
        session.commit()
        public_id = case.public_id
    with sessions() as session:
        case = session.scalars(select(Case).where(Case.public_id == public_id)).one()
        assert case.reference == "PG-1"
        assert case.created_at.tzinfo is not None
        assert case.rule["min_used_share"] == pytest.approx(1 / 3)  # JSON kept as written
        delete_case(session, case, ImageStore(tmp_path))
        session.commit()
    with sessions() as session:
        assert session.scalars(select(Case)).all() == []
    engine.dispose()


def test_the_app_runs_its_cases_on_postgresql(
    migrated_postgres_url: str, app_config, inference_service, images
) -> None:
    from app import create_app
    from tests.support.server import multipart

    app = create_app(
        {**app_config, "DATABASE_URL": migrated_postgres_url}, inference=inference_service
    )
    client = admin_client(app)
    files = [("images", (f"{i}.png", images.make(size=(160, 160), seed=i))) for i in range(2)]
    body, content_type = multipart({"reference": "PG-API"}, files)
    created = client.post("/api/v1/cases", data=body, content_type=content_type)
    assert created.status_code == 201
    read = client.get(created.headers["Location"]).get_json()
    assert read["reference"] == "PG-API"
    assert len(read["images"]) == 2
    engine = app.extensions["records"].engine
    assert engine.dialect.name == "postgresql"
    engine.dispose()


def test_the_migrations_build_exactly_the_tables_of_the_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.records.schema import Base

    engine = make_engine(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_a_new_cases_reviews_are_known_empty_without_asking_the_database(
    migrated_engine: Engine,
) -> None:
    selects: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    with session_factory(migrated_engine)() as session:
        case = new_case(session, "NEW-1", "", CARD)
        session.commit()
        event.listen(migrated_engine, "before_cursor_execute", count)
        assert case.signed_off is None
        assert case.reviews == []
    assert selects == []
