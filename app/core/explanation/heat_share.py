"""How much of a Grad-CAM heatmap lies on the segmented leukocytes.

A model that reads cell morphology puts most of its heat on the white cells; the
result page says plainly when an answer rests mostly on something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from app.core.explanation.segmentation import Segmentation

# The cells' outline is widened by this share of the image side (4 px on a 224 px photograph),
# so the cytoplasm's rim and the cell border count as the cell.
DILATION_FRACTION = 4 / 224
# Below this share of the heat on the cells, an answer rests mostly on something else.
MOSTLY_ON_CELLS = 0.5


@dataclass(frozen=True)
class HeatShare:
    """The share of the heat on the (widened) leukocytes and the share of the image they cover."""

    on_cells: float
    cells_area: float

    @property
    def mostly_elsewhere(self) -> bool:
        return self.on_cells < MOSTLY_ON_CELLS


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
