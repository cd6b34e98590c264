"""Where the trained models and the data set are found for tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

from app.core.model_files import model_names

ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "ALL_DATA_DIR"


def find_models_dir() -> Path | None:
    """MODELS_DIR if it holds models, else <root>/models if it does, else None."""
    for candidate in (os.environ.get("MODELS_DIR"), ROOT / "models"):
        if candidate and Path(candidate).is_dir() and model_names(candidate):
            return Path(candidate)
    return None


def served_models_dir() -> Path:
    """The folder a server started for a test or benchmark serves (<root>/models by default)."""
    return find_models_dir() or ROOT / "models"


def data_root() -> Path | None:
    """The data set's image root (its ``original/`` folder when it has one), or None."""
    raw = os.environ.get(DATA_ENV)
    if not raw:
        return None
    root = Path(raw)
    return root / "original" if (root / "original").is_dir() else root
