"""An image store that cannot be written (a read-only disk): /readyz says so, and uploads get
a 503 that says so too, never a 500; a deletion still deletes the case."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.core.service import InferenceService
from tests.support.accounts import signed_in, token_for, with_token
from tests.support.images import ImageFactory
from tests.support.server import multipart

ReadOnly = Callable[[], AbstractContextManager[None]]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


@pytest.fixture
def read_only(store: Path) -> ReadOnly:
    """Makes the store read-only while inside: a read-only bind mount for root (whom a mode
    does not stop), a mode of 555 for anyone else."""

    @contextmanager
    def made() -> Iterator[None]:
        if os.geteuid() != 0:
            store.chmod(0o555)
            try:
                yield
            finally:
                store.chmod(0o755)
            return
        mount = ["mount", "--bind", "-o", "ro", str(store), str(store)]
        done = subprocess.run(mount, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"root here cannot mount read-only: {done.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["umount", str(store)], check=True)

    return made


@pytest.fixture
def store_app(
    app_config: dict[str, object], inference_service: InferenceService, store: Path
) -> Iterator[Flask]:
    app = create_app({**app_config, "IMAGE_STORE": str(store)}, inference=inference_service)
    yield app
    app.extensions["records"].engine.dispose()


@pytest.fixture
def admin(store_app: Flask) -> FlaskClient:
    return with_token(signed_in(store_app.test_client(), "admin"), token_for(store_app, "admin"))


def case_body(**form: str) -> tuple[bytes, str]:
    smears = [("images", (f"{i}.png", ImageFactory().make(seed=i))) for i in range(2)]
    return multipart({"reference": "RO-1", **form}, smears)


def test_readyz_says_the_store_cannot_be_written(admin: FlaskClient, read_only) -> None:
    assert admin.get("/readyz").status_code == 200
    with read_only():
        answer = admin.get("/readyz")
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "image_store_unavailable"
    assert "the image store cannot be written" in error["message"]
    assert admin.get("/readyz").status_code == 200


def test_a_case_upload_gets_a_503_that_says_why_and_saves_nothing(
    admin: FlaskClient, read_only
) -> None:
    body, content_type = case_body()
    with read_only():
        answer = admin.post("/api/v1/cases", data=body, content_type=content_type)
        assert answer.status_code == 503, answer.get_data(as_text=True)[:300]
        error = answer.get_json()["error"]
        assert error["code"] == "image_store_unavailable"
        assert "cannot be stored" in error["message"]
        assert "Nothing was saved" in error["message"]
        page = admin.get("/cases/new").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        body, content_type = case_body(csrf_token=token.group(1))
        form = admin.post("/cases/", data=body, content_type=content_type)
        assert form.status_code == 503
        assert "cannot be stored" in form.get_data(as_text=True)
    assert admin.get("/api/v1/cases").get_json()["total"] == 0


def test_a_case_is_deleted_even_when_its_photographs_cannot_be(
    admin: FlaskClient, read_only, store: Path
) -> None:
    body, content_type = case_body()
    created = admin.post("/api/v1/cases", data=body, content_type=content_type)
    assert created.status_code == 201
    case_id = created.get_json()["id"]
    with read_only():
        assert admin.delete(f"/api/v1/cases/{case_id}").status_code == 204
    assert admin.get(f"/api/v1/cases/{case_id}").status_code == 404
    # The photographs stay behind, for `flask images gc` to remove.
    assert [p for p in store.rglob("*") if p.is_file()]
