"""What a cell model's answer rests on: each leukocyte outlined in its class's colour,
and a Grad-CAM of each cell for its own class, weighted by its attention."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from app.core.cells.crops import CROP_PX, FieldCells
from app.core.explanation.gradcam import GradCam
from app.core.imaging import DISPLAY_SIDE, downscale, png_bytes
from app.core.prediction import CellReading

# Okabe-Ito colours: told apart with colour-vision deficiencies.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "benign": (0, 158, 115),
    "early_pre_b": (230, 159, 0),
    "pre_b": (213, 94, 0),
    "pro_b": (204, 121, 167),
}
UNCERTAIN_COLOUR = (110, 110, 110)


def cell_heat(
    gradcam: GradCam, field: FieldCells, class_indices: list[int], weights: np.ndarray
) -> np.ndarray:
    """A heat map over the normalised photograph: each cell's Grad-CAM for its class, scaled
    by its weight in the field's answer over the largest weight, the maximum where they overlap."""
    height, width = field.shape
    canvas = np.zeros((height, width), np.float32)
    top_weight = float(np.max(weights)) if len(weights) else 1.0
    for crop, index, weight, (left, top) in zip(
        field.crops, class_indices, weights, field.windows(), strict=True
    ):
        heat = gradcam.heatmap(crop, index) * (float(weight) / top_weight)
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(height, top + CROP_PX), min(width, left + CROP_PX)
        part = heat[y0 - top : y1 - top, x0 - left : x1 - left]
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], part)
    return canvas


def outline_cells_png(
    image: Image.Image, reading: CellReading, max_side: int = DISPLAY_SIDE
) -> bytes:
    """PNG of the photograph at display size with each cell's box in its class's colour
    (grey when the cell is uncertain)."""
    shown = downscale(image, max_side).copy()
    scale = shown.width / max(1, _uploaded_width(image, reading))
    draw = ImageDraw.Draw(shown)
    line = max(2, round(shown.width / 200))
    for cell in reading.cells:
        x, y, w, h = (v * scale for v in cell.box)
        colour = CLASS_COLOURS[cell.class_id] if cell.status == "classified" else UNCERTAIN_COLOUR
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=line)
    return png_bytes(shown)


def _uploaded_width(image: Image.Image, reading: CellReading) -> int:
    """The uploaded photograph's width, which the cells' boxes are in."""
    return round(image.width * reading.upload_scale)
