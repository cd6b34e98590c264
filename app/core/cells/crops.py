"""A field's leukocytes cut out at one physical size, for the classifier and the gallery.

``read_field`` is the cell path's one preprocessing, used by training, evaluation
and serving: measure the cells' scale, resample to it, find the leukocytes,
normalise the stain over the field, and cut a ``CROP_PX`` square around each
leukocyte (``CROP_RBC`` red-cell diameters, about 22 micrometres). A window that
would leave the photograph is slid back inside it, so no crop holds padding;
only a photograph smaller than a window is mirrored at its edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from app.core.cells.detect import (
    NORMAL_RBC_PX,
    RBC_UM,
    FoundCell,
    find_cells,
    leukocyte_mask,
    normalise_scale,
    normalising_factor,
)
from app.core.cells.exclusions import EXCLUSION_REASONS
from app.core.cells.stain import looked_up, stain_scale, stain_table, white_point
from app.core.errors import CaptureError
from app.core.imaging import pixels
from app.core.scale import MIN_SIDE, UNMEASURABLE_FIX, measure_cells

CROP_PX = 64
CROP_RBC = CROP_PX / NORMAL_RBC_PX
CROP_UM = CROP_RBC * RBC_UM
# A field's cells beyond this many (the largest first) are not classified.
MAX_CELLS = 64


@dataclass(frozen=True)
class FieldCells:
    """What the cell path read of one photograph.

    ``found`` holds every object with its exclusion; ``crops`` (stain-normalised floats)
    and ``pictures`` (the photograph's own colours, uint8) hold one square per used cell,
    in the order of ``used``. ``factor`` is normalised pixels per photograph pixel.
    """

    factor: float
    found: list[FoundCell]
    crops: np.ndarray = field(repr=False)
    pictures: np.ndarray = field(repr=False)
    # Height and width of the normalised photograph the crops were cut from.
    shape: tuple[int, int] = (0, 0)
    # The field's stain normalisation of each 8-bit value (``stain.stain_table``): the crops
    # are the pictures looked up in it, so they can be made again from them.
    stain: np.ndarray | None = field(default=None, repr=False)

    def windows(self) -> list[tuple[int, int]]:
        """The (left, top) corner of each used cell's crop in the normalised photograph."""
        return windows(self.shape, [c.centre for c in self.used])

    @property
    def used(self) -> list[FoundCell]:
        return [c for c in self.found if c.used][:MAX_CELLS]

    @property
    def excluded(self) -> dict[str, int]:
        """How many objects were left out, by reason."""
        counts = {reason: 0 for reason in EXCLUSION_REASONS}
        for cell in self.found:
            if cell.excluded is not None:
                counts[cell.excluded] += 1
        return {reason: n for reason, n in counts.items() if n}

    def photo_box(self, cell: FoundCell) -> list[int]:
        """The cell's box [x, y, w, h] in the photograph's own pixels."""
        return [round(v / self.factor) for v in cell.box]


def read_photograph(image: Image.Image) -> FieldCells:
    """``read_field`` at the photograph's measured scale; CaptureError when it cannot be
    measured (no red cells side by side, or nothing but cells)."""
    if min(image.size) < MIN_SIDE:
        reason = f"the image ({image.width}x{image.height} pixels) is too small to hold a cell"
        raise CaptureError(reason, UNMEASURABLE_FIX, code="scale_unmeasurable")
    measured = measure_cells(image)
    if measured.size_px is None:
        reason = f"the size of the cells could not be measured ({measured.reason})"
        raise CaptureError(reason, UNMEASURABLE_FIX, code="scale_unmeasurable")
    return read_field(image, measured.size_px)


def read_field(image: Image.Image, rbc_px: float) -> FieldCells:
    """The leukocytes of an RGB photograph whose red cells measure ``rbc_px`` pixels."""
    rgb8 = pixels(normalise_scale(image, rbc_px))
    mask = leukocyte_mask(rgb8)
    found = sorted(find_cells(mask), key=lambda c: -c.area_rbc)
    used = [c for c in found if c.used][:MAX_CELLS]
    white = white_point(rgb8, mask)
    pictures = cut(rgb8, [c.centre for c in used])
    # The stain's factors come from the whole field; only the crops are normalised.
    table = stain_table(white, stain_scale(rgb8, mask, white))
    return FieldCells(
        factor=normalising_factor(rbc_px),
        found=found,
        crops=looked_up(table, pictures),
        pictures=pictures,
        shape=(rgb8.shape[0], rgb8.shape[1]),
        stain=table,
    )


def windows(
    shape: tuple[int, int], centres: list[tuple[float, float]], side: int = CROP_PX
) -> list[tuple[int, int]]:
    """The (left, top) corner of a ``side`` square around each centre, slid inside an image
    of ``shape`` (height, width); negative where the image is narrower than the square."""
    height, width = shape
    out = []
    for x, y in centres:
        left = int(np.clip(round(x - side / 2), 0, max(0, width - side)))
        top = int(np.clip(round(y - side / 2), 0, max(0, height - side)))
        out.append((left - max(0, side - width) // 2, top - max(0, side - height) // 2))
    return out


def cut(rgb: np.ndarray, centres: list[tuple[float, float]], side: int = CROP_PX) -> np.ndarray:
    """``side`` squares of ``rgb`` around each centre (``windows``); an image smaller than a
    square is mirrored at its edges first."""
    height, width = rgb.shape[:2]
    corners = windows((height, width), centres, side)
    pad_y, pad_x = max(0, side - height), max(0, side - width)
    if pad_y or pad_x:
        rgb = np.pad(
            rgb,
            ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)),
            mode="symmetric",
        )
    out = np.empty((len(centres), side, side, 3), rgb.dtype)
    for i, (left, top) in enumerate(corners):
        left, top = left + pad_x // 2, top + pad_y // 2
        out[i] = rgb[top : top + side, left : left + side]
    return out
