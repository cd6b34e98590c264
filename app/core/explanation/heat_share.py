"""How much of a Grad-CAM heatmap lies on the segmented leukocytes.

A model that reads cell morphology puts its heat on the white cells more densely than on
the rest of the field. The result page says plainly when an answer's heat is less dense on
the cells than the model's threshold (``HeatRuleSpec.min_density`` in its card), and says
so too when no cells were found, so the question cannot be answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from app.core.explanation.segmentation import Segmentation
from app.core.model_card import HeatRuleSpec, ModelCard

# The cells' outline is widened by this share of the image side (4 px on a 224 px photograph),
# so the cytoplasm's rim and the cell border count as the cell.
DILATION_FRACTION = 4 / 224
# The threshold of a model whose card has no fitted heat rule.
DEFAULT_MIN_DENSITY = HeatRuleSpec().min_density

# "on_cells": dense enough on the cells; "elsewhere": less dense than the threshold;
# "no_cells": no cells were found, so there is nothing to weigh the heat against.
HeatCheck = Literal["on_cells", "elsewhere", "no_cells"]


@dataclass(frozen=True)
class HeatShare:
    """The share of the heat on the (widened) leukocytes and the share of the image they cover."""

    on_cells: float
    cells_area: float

    @property
    def density(self) -> float | None:
        """How many times denser the heat is on the cells than over the whole field (1: as
        dense as anywhere); None when no cells were found."""
        if self.cells_area <= 0:
            return None
        return self.on_cells / self.cells_area

    def check(self, min_density: float) -> HeatCheck:
        """Whether the heat is at least ``min_density`` times denser on the cells than overall."""
        density = self.density
        if density is None:
            return "no_cells"
        return "elsewhere" if density < min_density else "on_cells"


def min_density(card: ModelCard) -> float:
    """The model's fitted threshold, or the default when its card has none."""
    return DEFAULT_MIN_DENSITY if card.heat_rule is None else card.heat_rule.min_density


def heat_share(heat: np.ndarray, cells: Segmentation) -> HeatShare | None:
    """Where ``heat`` (any size, covering the same field) lies; None when the map is empty."""
    mask = cells.work_mask
    if mask.size == 0:
        return None
    radius = max(1, round(DILATION_FRACTION * mask.shape[1]))
    widened = ndi.binary_dilation(mask, iterations=radius) if mask.any() else mask
    resized = Image.fromarray(np.asarray(heat, dtype=np.float32)).resize(
        (mask.shape[1], mask.shape[0]), Image.Resampling.BILINEAR
    )
    weights = np.clip(np.asarray(resized), 0.0, None)
    total = float(weights.sum())
    if total <= 0:
        return None
    return HeatShare(
        on_cells=float(weights[widened].sum()) / total, cells_area=float(widened.mean())
    )
