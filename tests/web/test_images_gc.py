"""``flask images gc``: the photographs no case names, left by uploads that failed or were cut
off, are removed once they are an hour old; what a case names, what is younger and what the
store did not write stay; the sweep is in the audit trail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app.records.image_store import ImageStore
from app.records.schema import AuditEvent
from tests.support.accounts import admin_client
from tests.support.images import ImageFactory
from tests.support.server import multipart

HOUR = 3600


def aged(path: Path, seconds: float) -> Path:
    """The file as if it had been written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def files(store: ImageStore) -> set[Path]:
    return set(store.files())


@pytest.fixture
def store(app: Flask) -> ImageStore:
    found = app.extensions["records"].store
    assert found is not None
    return found


def gc(app: Flask, *options: str):
    return app.test_cli_runner().invoke(args=["images", "gc", *options])


def test_unnamed_photographs_an_hour_old_are_removed_and_the_rest_kept(
    app: Flask, store: ImageStore
) -> None:
    client = admin_client(app)
    photos = [("images", (f"{i}.png", ImageFactory().make(seed=i))) for i in range(2)]
    body, content_type = multipart({"reference": "GC-1"}, photos)
    assert client.post("/api/v1/cases", data=body, content_type=content_type).status_code == 201
    named = {aged(p, 2 * HOUR) for p in files(store)}
    assert len(named) == 2
    # What an upload that died after storing its photographs leaves: files and a part-write.
    orphan = aged(store.path(store.put(b"an orphan")), 2 * HOUR)
    partial = orphan.parent / ".partial-x1y2"
    partial.write_bytes(b"half")
    aged(partial, 2 * HOUR)
    young = store.path(store.put(b"an upload under way"))
    foreign = store.root / "notes.txt"
    foreign.write_text("not the store's")
    aged(foreign, 2 * HOUR)

    dry = gc(app, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 files" in dry.output, dry.output
    assert orphan.exists()
    assert partial.exists()
    done = gc(app)
    assert done.exit_code == 0, done.output
    assert "removed 2 files" in done.output
    assert "kept 1 younger" in done.output
    assert "left 1 files the store did not write" in done.output
    assert files(store) == named | {young, foreign}
    assert not orphan.parent.exists()  # its folders went with it
    with app.extensions["records"].sessions() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "images_collected")
        ).all()
    assert len(events) == 1
    assert events[0].detail["removed"] == 2
    assert events[0].actor.startswith("cli:")
    case = client.get("/api/v1/cases").get_json()["cases"][0]["id"]
    assert client.get(f"/cases/{case}/fields/1/field.jpg").status_code == 200


def test_a_photograph_stored_again_is_young_again(app: Flask, store: ImageStore) -> None:
    # An old orphan that an upload stores again (the same photograph) is about to be named.
    path = aged(store.path(store.put(b"the same photograph")), 2 * HOUR)
    store.put(b"the same photograph")
    assert gc(app).exit_code == 0
    assert path.exists()
    assert "removed 1 files" in gc(app, "--older-than", "0").output
    assert not path.exists()


def test_the_older_two_level_layout_is_swept_and_served_in_place(
    app: Flask, store: ImageStore
) -> None:
    client = admin_client(app)
    photo = [("images", ("0.png", ImageFactory().make(seed=3)))]
    body, content_type = multipart({"reference": "GC-OLD"}, photo)
    assert client.post("/api/v1/cases", data=body, content_type=content_type).status_code == 201
    (named,) = files(store)

    def to_older_layout(path: Path) -> Path:
        older = path.parent / path.name[2:4] / path.name
        older.parent.mkdir(parents=True, exist_ok=True)
        path.rename(older)
        return aged(older, 2 * HOUR)

    named_older = to_older_layout(named)
    orphan_older = to_older_layout(store.path(store.put(b"an older orphan")))

    done = gc(app)
    assert done.exit_code == 0, done.output
    assert "removed 1 files" in done.output
    assert files(store) == {named_older}
    case = client.get("/api/v1/cases").get_json()["cases"][0]["id"]
    assert client.get(f"/cases/{case}/fields/1/field.jpg").status_code == 200
    assert not orphan_older.parent.exists()
