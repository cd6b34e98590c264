"""Region-based leukocyte segmentation of a Wright-Giemsa blood smear photograph.

Leukocytes (and blasts) are the violet objects of the smear: high CIE-LAB a*
(magenta) together with negative b* (blue). Red cells are pale pink or grey-blue
(low a*), the background is white to yellow, and the scale bar is red (b* > 0).
Steps: downscale to a bounded working size, threshold a* with Otsu (adaptive to
the stain) above a fixed floor, keep bluish pixels only, open, fill holes, drop
small objects (platelets, debris, scale-bar text), split touching cells with a
distance-transform watershed, and label the connected components.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import rgb2lab
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from app.core.imaging import DISPLAY_SIDE, downscale, png_bytes

# Long side of the working image; keeps huge uploads to a few milliseconds.
WORK_SIDE = 256
# a* below this is never leukocyte, whatever Otsu says (blank or cell-free fields).
A_FLOOR = 8.0
# Violet is bluish: b* must be below this (the red scale bar has b* > 0).
B_CEILING = 0.0
# Smaller objects (a third of a red cell across) are platelets, debris or scale-bar text.
MIN_OBJECT_FRACTION = 0.002
# Watershed seeds closer than this fraction of the long side belong to one cell.
SEED_DISTANCE_FRACTION = 0.05
OUTLINE_COLOR = (255, 235, 0)


@dataclass(frozen=True)
class Cell:
    """One segmented leukocyte, in pixel coordinates of the original image."""

    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)
    area: int  # pixels
    centroid: tuple[float, float]  # x, y


@dataclass
class Segmentation:
    """Cells found in one photograph; ``mask`` is at the photograph's own size."""

    work_mask: np.ndarray = field(repr=False)  # bool, at the working resolution
    size: tuple[int, int]  # width, height of the photograph
    cells: list[Cell]

    @property
    def count(self) -> int:
        return len(self.cells)

    @cached_property
    def mask(self) -> np.ndarray:
        """Boolean (H, W) mask at the photograph's size (built on first use: 12 MP is slow)."""
        return resize_mask(self.work_mask, self.size)

    @property
    def foreground_fraction(self) -> float:
        return float(self.work_mask.mean()) if self.work_mask.size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no mask)."""
        return {
            "count": self.count,
            "foreground_fraction": round(self.foreground_fraction, 4),
            "cells": [asdict(c) for c in self.cells],
        }


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return np.add.outer(r**2, r**2) <= radius**2


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``size`` (width, height)."""
    h, w = mask.shape
    width, height = size
    if (w, h) == (width, height):
        return mask
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.intp)
    return np.asarray(mask[rows[:, None], cols[None, :]])


def foreground_mask(rgb: np.ndarray, min_object_px: float | None = None) -> np.ndarray:
    """Boolean leukocyte mask of an RGB float array in [0, 1] (no resizing); objects under
    ``min_object_px`` pixels are dropped (default: a share of the image)."""
    lab = rgb2lab(rgb)
    a, b = lab[..., 1], lab[..., 2]
    threshold = A_FLOOR
    if a.max() > a.min():
        threshold = max(threshold, float(threshold_otsu(a)))
    mask = (a > threshold) & (b < B_CEILING)
    if min(mask.shape) >= 3:
        mask = ndi.binary_opening(mask, _disk(1))
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        smallest = MIN_OBJECT_FRACTION * mask.size if min_object_px is None else min_object_px
        keep = sizes >= max(1.0, smallest)
        keep[0] = False
        mask = keep[labels]
    return mask


def split_cells(mask: np.ndarray, seed_distance_px: float | None = None) -> np.ndarray:
    """Label image where touching round cells get separate labels; watershed seeds closer
    than ``seed_distance_px`` (default: a share of the long side) belong to one cell."""
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = ndi.distance_transform_edt(mask)
    if seed_distance_px is None:
        seed_distance_px = SEED_DISTANCE_FRACTION * max(mask.shape)
    min_distance = max(2, round(seed_distance_px))
    components, _ = ndi.label(mask)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return np.asarray(watershed(-distance, markers, mask=mask), dtype=np.int32)


def segment(image: Image.Image, work_side: int = WORK_SIDE) -> Segmentation:
    """Segment the leukocytes of an RGB photograph.

    Returns the mask at the image's own size and one ``Cell`` per leukocyte
    (bounding box, area and centroid in the image's pixel coordinates).
    """
    small = foreground_mask(np.asarray(downscale(image, work_side), dtype=np.float32) / 255.0)
    labels = split_cells(small)
    width, height = image.size
    sx, sy = width / small.shape[1], height / small.shape[0]
    cells: list[Cell] = []
    min_area = max(1.0, MIN_OBJECT_FRACTION * small.size)
    for i, found in enumerate(ndi.find_objects(labels), start=1):
        if found is None:
            continue
        ys, xs = np.nonzero(labels[found] == i)
        if len(ys) < min_area:
            continue  # a sliver the watershed cut off a cell
        y0, x0 = found[0].start, found[1].start
        cells.append(
            Cell(
                bbox=(
                    int(x0 * sx),
                    int(y0 * sy),
                    min(width, int(np.ceil(found[1].stop * sx))),
                    min(height, int(np.ceil(found[0].stop * sy))),
                ),
                area=int(round(len(ys) * sx * sy)),
                centroid=(
                    round(float((xs.mean() + x0 + 0.5) * sx), 1),
                    round(float((ys.mean() + y0 + 0.5) * sy), 1),
                ),
            )
        )
    return Segmentation(work_mask=small, size=(width, height), cells=cells)


def outline_png(
    image: Image.Image, segmentation: Segmentation, max_side: int = DISPLAY_SIDE
) -> bytes:
    """PNG of the photograph (at display size) with each segmented region outlined."""
    shown = downscale(image, max_side)
    # Bilinear then threshold: smooth outlines when the display is larger than the work mask.
    grey = Image.fromarray(segmentation.work_mask.astype(np.uint8) * 255)
    mask = np.asarray(grey.resize(shown.size, Image.Resampling.BILINEAR)) > 127
    # A 2-pixel outline stays visible on a 512-pixel display.
    edge = mask & ~ndi.binary_erosion(mask, _disk(1), iterations=2, border_value=0)
    pixels = np.array(shown, dtype=np.uint8)
    pixels[edge] = OUTLINE_COLOR
    return png_bytes(Image.fromarray(pixels))
