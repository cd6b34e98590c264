"""Where the trained models and the data set are found for tests and benchmarks."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.model_files import model_names

if TYPE_CHECKING:
    from app.core.model_card import ModelCard
    from app.core.service import InferenceService

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


# The default model and the paper's LeNet: enough for a server whose tests are not about
# which models it serves, and each of its workers loads two models instead of five.
DEFAULT_AND_LENET = ("cell_lenet", "lenet")


@functools.cache
def models_subset(names: tuple[str, ...]) -> Path:
    """A folder that serves only ``names`` of served_models_dir(): links to their files and to
    every file no model owns (the cell finder's settings); made once a process."""
    source = served_models_dir()
    others = set(model_names(source)) - set(names)
    folder = Path(tempfile.mkdtemp(prefix="models-"))
    for path in source.iterdir():
        if path.is_file() and path.name.split(".")[0] not in others:
            (folder / path.name).symlink_to(path.resolve())
    return folder


def data_root() -> Path | None:
    """The data set's image root (its ``original/`` folder when it has one), or None."""
    raw = os.environ.get(DATA_ENV)
    if not raw:
        return None
    root = Path(raw)
    return root / "original" if (root / "original").is_dir() else root


def field_cards(service: InferenceService) -> list[ModelCard]:
    """The served models that read whole fields (the cell models have tests of their own)."""
    return [card for card in service.models() if card.unit == "field"]


def field_model_names(models_dir: Path) -> list[str]:
    """The committed models that read whole fields."""
    from app.core.model_card import ModelCard
    from app.core.model_files import model_files

    return [
        n
        for n in model_names(models_dir)
        if ModelCard.load(model_files(models_dir, n).card).unit == "field"
    ]
