"""Finds the leukocytes of a photograph once it is brought to the cells' physical scale.

The photograph is resampled so that its red cells measure ``NORMAL_RBC_PX`` pixels
(``app.core.scale.measure_cells``); every length below is then a physical length.
The leukocytes are the violet objects of ``segmentation.foreground_mask``, split by
its watershed. An object is excluded, with its reason, when the border cuts it,
when it sits in the scale-bar corner and looks like text, when it is too small to be
a leukocyte (a platelet, debris) or too large or ragged to be one (a clump of red
cells, cells lying on each other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.core.cells.exclusions import Exclusion
from app.core.explanation.segmentation import cell_regions, foreground_mask, split_cells

# The scale measure is about a red cell's diameter, nominally 7.5 micrometres.
RBC_UM = 7.5
# Red cells measure this many pixels once a photograph is normalised (3 across a crop).
NORMAL_RBC_PX = 64 / 3
DISC_PX = np.pi / 4 * NORMAL_RBC_PX**2
# Leukocyte areas, in red-cell discs: below is debris or a platelet, above a clump.
MIN_AREA_RBC = 0.2
MAX_AREA_RBC = 4.0
# Watershed seeds closer than this (red-cell diameters) belong to one leukocyte.
SEED_DISTANCE_RBC = 0.5
# Area over bounding-box area (a disc fills 0.79): a ragged object is a clump, not one cell.
MIN_FILL = 0.45
# Lower-right corner where captures burn in a scale bar, as fractions of width and height.
SCALE_BAR_CORNER = (0.80, 0.88)


@dataclass(frozen=True)
class FoundCell:
    """One object of the normalised photograph: its box (x, y, w, h), centre and area (in
    red-cell discs), and why it is excluded (None: it is a leukocyte to classify)."""

    box: tuple[int, int, int, int]
    centre: tuple[float, float]
    area_rbc: float
    excluded: Exclusion | None = None

    @property
    def used(self) -> bool:
        return self.excluded is None


def normalising_factor(rbc_px: float) -> float:
    """How much to resample a photograph whose red cells measure ``rbc_px`` pixels."""
    return NORMAL_RBC_PX / rbc_px


def normalise_scale(image: Image.Image, rbc_px: float) -> Image.Image:
    """The RGB photograph resampled so its red cells measure ``NORMAL_RBC_PX``."""
    factor = normalising_factor(rbc_px)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
    if size == rgb.size:
        return rgb
    reduce = int(1 / factor)
    if reduce >= 2:
        # Box-reduce first: resampling a phone photograph directly is slow.
        rgb = rgb.reduce(reduce)
    return rgb.resize(size, Image.Resampling.BILINEAR)


def leukocyte_mask(rgb: np.ndarray) -> np.ndarray:
    """The violet objects of a normalised RGB image, 8-bit or floats in [0, 1]."""
    return foreground_mask(rgb, min_object_px=MIN_AREA_RBC / 2 * DISC_PX)


def find_cells(mask: np.ndarray) -> list[FoundCell]:
    """Every object of a normalised photograph's ``leukocyte_mask``, used or excluded."""
    disc = DISC_PX
    labels = split_cells(mask, seed_distance_px=SEED_DISTANCE_RBC * NORMAL_RBC_PX)
    height, width = mask.shape
    found = []
    for _, where, pixels, centre in cell_regions(labels):
        y0, x0 = where[0].start, where[1].start
        y1, x1 = where[0].stop, where[1].stop
        area = pixels / disc
        box = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
        fill = pixels / ((x1 - x0) * (y1 - y0))
        found.append(
            FoundCell(
                box,
                (float(centre[0]), float(centre[1])),
                round(area, 3),
                _exclusion(box, area, fill, width, height),
            )
        )
    return found


def _exclusion(
    box: tuple[int, int, int, int], area: float, fill: float, width: int, height: int
) -> Exclusion | None:
    x, y, w, h = box
    if x <= 0 or y <= 0 or x + w >= width or y + h >= height:
        return "border"
    in_corner = x >= SCALE_BAR_CORNER[0] * width and y >= SCALE_BAR_CORNER[1] * height
    if in_corner and (area < 2 * MIN_AREA_RBC or max(w, h) > 3 * min(w, h)):
        return "scale_bar"
    if area < MIN_AREA_RBC:
        return "too_small"
    if area > MAX_AREA_RBC or fill < MIN_FILL:
        return "clump"
    return None
