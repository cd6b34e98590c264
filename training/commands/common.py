"""What several commands do the same way when they run: which models, which images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.model_card import ModelCard
from app.core.model_files import model_files, model_names

if TYPE_CHECKING:
    from training.data import Sample


def selected_models(models_dir: Path, choice: str, unit: str | None = "field") -> list[str]:
    """The models of ``models_dir`` that ``choice`` names ("all": every one that reads
    ``unit``, or every one when ``unit`` is None)."""
    available = model_names(models_dir)
    if unit is not None:
        available = [n for n in available if card(models_dir, n).unit == unit]
    names = available if choice == "all" else [choice]
    if not names or any(n not in available for n in names):
        raise FileNotFoundError(f"no model {choice!r} in {models_dir}")
    return names


def card(models_dir: Path, name: str) -> ModelCard:
    return ModelCard.load(model_files(models_dir, name).card)


def split_of(args: argparse.Namespace, split: str) -> list[Sample]:
    """The images of the data folder (``--data-dir``) that the models folder's split
    manifest (``--models-dir``) puts in ``split``."""
    from training.data import DataSetError, data_dir_from, discover
    from training.evaluate import select_split
    from training.split import MANIFEST_NAME

    samples = select_split(
        discover(data_dir_from(args.data_dir)), args.models_dir / MANIFEST_NAME, split
    )
    if not samples:
        raise DataSetError(f"no image of this folder is in the {split} split")
    return samples


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"
