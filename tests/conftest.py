"""Shared fixtures: the real models (loaded once per session), the app, its client, images.

Models come from MODELS_DIR when it holds models, else from <project root>/models;
with neither, tests that need them skip. Real smear images come from ALL_DATA_DIR
(tests marked ``data`` skip without it); bad-input images are synthesised here.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from app import create_app
from app.inference import InferenceService
from app.model_store import model_names

ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "ALL_DATA_DIR"
CLASS_FOLDERS = {"Benign": "benign", "Early": "early_pre_b", "Pre": "pre_b", "Pro": "pro_b"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(DATA_ENV):
        return
    skip = pytest.mark.skip(reason=f"{DATA_ENV} is not set: export it to the data set folder")
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)


def find_models_dir() -> Path | None:
    """MODELS_DIR if it holds models, else <root>/models if it does, else None."""
    candidates = [os.environ.get("MODELS_DIR"), ROOT / "models"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and model_names(candidate):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def models_dir() -> Path:
    found = find_models_dir()
    if found is None:
        pytest.skip(f"no trained models: {ROOT / 'models'} is empty and MODELS_DIR is unset "
                    "or empty (point MODELS_DIR at a folder of <name>.keras + <name>.json)")
    return found


@pytest.fixture(scope="session")
def inference_service(models_dir: Path) -> InferenceService:
    """Every model loaded and warmed up once for the whole session."""
    return InferenceService(models_dir).load()


@pytest.fixture()
def app(models_dir: Path, inference_service: InferenceService) -> Flask:
    return create_app(
        {"APP_ENV": "testing", "MODELS_DIR": str(models_dir), "SECRET_KEY": "test-secret"},
        inference=inference_service,
    )


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of a fresh upload page (its session cookie stays in ``client``)."""
    page = client.get("/").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "upload page has no CSRF token"
    return match.group(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    raw = os.environ.get(DATA_ENV)
    if not raw:
        pytest.skip(f"{DATA_ENV} is not set: export it to the data set folder")
    root = Path(raw)
    if (root / "original").is_dir():
        root = root / "original"
    if not root.is_dir():
        pytest.skip(f"{DATA_ENV}={raw} is not a folder")
    return root


@pytest.fixture(scope="session")
def smear_images(data_dir: Path) -> dict[str, list[Path]]:
    """A few real smear images per class id (first files by name, so runs are stable)."""
    found = {}
    for folder, class_id in CLASS_FOLDERS.items():
        files = sorted((data_dir / folder).glob("*.jpg"))[:3]
        if not files:
            pytest.skip(f"no images in {data_dir / folder}")
        found[class_id] = files
    return found


class ImageFactory:
    """Synthesises test images in memory (never data-set images)."""

    @staticmethod
    def smear(size: tuple[int, int] = (96, 96), seed: int = 0) -> Image.Image:
        """A smooth smear-like RGB image: pinkish background, a purple blob, mild noise."""
        rng = np.random.default_rng(seed)
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        blob = np.exp(-(((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2))
        base = np.stack([230 - 120 * blob, 200 - 150 * blob, 220 - 60 * blob], axis=-1)
        noisy = base + rng.normal(0, 4, base.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    @staticmethod
    def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **save_args)
        return buffer.getvalue()

    def make(self, fmt: str = "PNG", size: tuple[int, int] = (96, 96), mode: str = "RGB",
             seed: int = 0, **save_args: object) -> bytes:
        return self.encode(self.smear(size, seed).convert(mode), fmt, **save_args)


@pytest.fixture(scope="session")
def images() -> ImageFactory:
    return ImageFactory()


@pytest.fixture()
def no_new_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails the test if anything is written to the working directory or the temp dir.

    Both are pointed at fresh empty folders (other processes share the real ones).
    """
    import tempfile

    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield
    for folder in (work, temp):
        written = sorted(p.name for p in folder.iterdir())
        assert not written, f"files were written to {folder}: {written}"
