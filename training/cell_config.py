"""How a cell model is trained: the multiple-instance recipe's settings.

Apart from ``training.cell_mil`` (TensorFlow) so the command line reads the defaults
without loading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# How many of a cell's orientations may be averaged: the first 1, 2, 4 or all 8
# (``training.cell_mil.orientations``).
VIEW_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class CellTrainConfig:
    model: str
    epochs: int = 16
    bag: int = 8
    batch_size: int = 16
    seed: int = 42
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    # Stain jitter per field in HED space: gains 1 +- hed_gain, offsets +- hed_offset.
    hed_gain: float = 0.15
    hed_offset: float = 0.03
    # Per-cell jitter on top of the field's.
    cell_gain: float = 0.05
    brightness: float = 0.05
    early_stopping_patience: int = 4
    # Each crop turned by any angle, zoomed 1 +- this and moved up to this of its side (0: off).
    crop_geometry: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "pooling": "gated attention over the field's cells (app.core.cells.pooling)",
            "augmentation": "HED gain/offset per field and per cell, brightness, flips, "
            "90-degree rotations"
            + (", any-angle turns, zoom and shift per cell" if self.crop_geometry else ""),
            "lr_schedule": "cosine decay over all epochs",
            "class_weighting": "inverse frequency",
        }
