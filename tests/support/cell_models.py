"""A cell model written to a folder for tests: the registry's architecture, untrained weights."""

from __future__ import annotations

from pathlib import Path

from app.core.model_card import ModelCard
from app.core.model_files import model_files
from training.architectures import architecture


def write_cell_model(models_dir: Path, name: str = "cell_lenet") -> ModelCard:
    """An untrained cell model and its card in ``models_dir`` (plumbing, not accuracy)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    arch = architecture(name)
    files = model_files(models_dir, name)
    arch.build().save(files.weights)
    card = ModelCard(
        name=name,
        architecture=arch.display_name,
        version="test",
        input_size=arch.input_size,
        unit="cell",
    )
    card.save(files.card)
    return card
