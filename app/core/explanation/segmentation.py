"""Region-based leukocyte segmentation of a Wright-Giemsa blood smear photograph.

Leukocytes (and blasts) are the violet objects of the smear: high CIE-LAB a*
(magenta) together with negative b* (blue). Red cells are pale pink or grey-blue
(low a*), the background is white to yellow, and the scale bar is red (b* > 0).
Steps: downscale to a bounded working size, threshold a* with Otsu (adaptive to
the stain) above a fixed floor, keep bluish pixels only, open, fill holes, drop
small objects (platelets, debris, scale-bar text), split touching cells with a
distance-transform watershed, and label the connected components.

The pixel work is OpenCV's (``app.core.masks``); the seeds and the watershed give what
scikit-image's ``peak_local_max`` and ``watershed`` gave on the whole mask, object by
object (``tests/unit/test_image_ops_equivalence.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from typing import Any

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology._util import _offsets_to_raveled_neighbors
from skimage.segmentation._watershed_cy import watershed_raveled

from app.core import masks
from app.core.imaging import DISPLAY_SIDE, downscale, pixels, png_bytes

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

# CIE-LAB of sRGB as scikit-image's rgb2lab computes it (D65, 2 degree observer):
# the sRGB curve of each 8-bit value, then XYZ over the white point.
_CODES = np.arange(256) / 255.0
_LINEAR = np.where(_CODES > 0.04045, ((_CODES + 0.055) / 1.055) ** 2.4, _CODES / 12.92)
_LINEAR_LUT = np.ascontiguousarray(np.repeat(_LINEAR.astype(np.float32)[None, :, None], 3, 2))
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZN = (_XYZ_FROM_RGB / _WHITE[:, None]).astype(np.float32)
_LAB_EPSILON = np.float32(0.008856)
# What a seed search sees outside its object.
_OUTSIDE = np.finfo(np.float32).min


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


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``size`` (width, height)."""
    h, w = mask.shape
    width, height = size
    if (w, h) == (width, height):
        return mask
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.intp)
    return np.asarray(mask[rows[:, None], cols[None, :]])


def lab_ab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIE-LAB a* and b* (float32) of an RGB image, 8-bit or floats in [0, 1] (read as 8-bit)."""
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    xyz = cv2.transform(cv2.LUT(np.ascontiguousarray(rgb), _LINEAR_LUT), _XYZN)
    f = cv2.pow(xyz, 1 / 3)
    dark = xyz <= _LAB_EPSILON
    if dark.any():
        f[dark] = xyz[dark] * np.float32(7.787) + np.float32(16 / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]  # views: splitting copies cost more
    return (fx - fy) * np.float32(500), (fy - fz) * np.float32(200)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """scikit-image's ``threshold_otsu``: the bin centre splitting a ``bins`` histogram over
    the values' range with the largest between-class variance."""
    low, high = cv2.minMaxLoc(values)[:2]
    width = (high - low) / bins
    index = ((values - np.float32(low)) * np.float32(1 / width)).astype(np.int32)
    counts = np.bincount(np.minimum(index, bins - 1).ravel(), minlength=bins).astype(np.float64)
    centres = low + width * (np.arange(bins) + 0.5)
    weight1 = np.cumsum(counts)
    weight2 = np.cumsum(counts[::-1])[::-1]
    # The first and last bins hold the extremes, so no class is ever empty.
    mean1 = np.cumsum(counts * centres) / weight1
    mean2 = (np.cumsum((counts * centres)[::-1]) / weight2[::-1])[::-1]
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    return float(centres[int(np.argmax(variance))])


def foreground_mask(rgb: np.ndarray, min_object_px: float | None = None) -> np.ndarray:
    """Boolean leukocyte mask of an RGB image, 8-bit or floats in [0, 1] (no resizing);
    objects under ``min_object_px`` pixels are dropped (default: a share of the image)."""
    a, b = lab_ab(rgb)
    threshold = A_FLOOR
    low, high = cv2.minMaxLoc(a)[:2]
    if high > low:
        threshold = max(threshold, otsu(a))
    mask = (a > threshold) & (b < B_CEILING)
    if min(mask.shape) >= 3:
        mask = masks.opening(mask)
    mask = masks.fill_holes(mask)
    smallest = MIN_OBJECT_FRACTION * mask.size if min_object_px is None else min_object_px
    return masks.without_small(mask, max(1.0, smallest))


def split_cells(mask: np.ndarray, seed_distance_px: float | None = None) -> np.ndarray:
    """Label image where touching round cells get separate labels; watershed seeds closer
    than ``seed_distance_px`` (default: a share of the long side) belong to one cell.

    Seeds are the maxima of the distance to the background, at most one within
    ``seed_distance_px`` (the highest first), sought object by object; an object with one
    seed is one cell, and the watershed runs only when some object has several."""
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = masks.euclidean_distance(mask)
    if seed_distance_px is None:
        seed_distance_px = SEED_DISTANCE_FRACTION * max(mask.shape)
    min_distance = max(2, round(seed_distance_px))
    floor = float(distance.min())
    footprint = np.ones((2 * min_distance + 1,) * 2, np.uint8)
    components, n = masks.label(mask)
    areas = np.bincount(components.ravel(), minlength=n + 1).tolist()
    seeds: list[list[int]] = []
    first = np.zeros(n + 1, np.int32)  # each object's first seed's label (0: none)
    count = 0
    for i, box in enumerate(ndi.find_objects(components), start=1):
        if box is None:
            continue
        inside = components[box] == i
        found = _seeds(distance[box], inside, areas[i], footprint, min_distance, floor)
        first[i] = count + 1 if found else 0
        count += len(found)
        top, left = box[0].start, box[1].start
        seeds.extend([row + top, col + left] for row, col in found)
    peaks = np.array(seeds, np.intp).reshape(-1, 2)
    if count == np.count_nonzero(first):
        return np.asarray(first[components])  # one seed an object: each object is one cell
    # The whole image, as before: the flooding order of equal distances depends on every seed.
    return watershed(distance, peaks, mask)


def watershed(distance: np.ndarray, seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """scikit-image's ``watershed(-distance, markers, mask=mask)`` (4-connected), seed k
    (row, column) labelled k + 1: its compiled flooding called directly, since its Python
    wrapper (checks, three ``np.pad`` calls, the neighbour offsets) cost twice the flooding
    on a 128 px field. The inputs are padded as the wrapper pads them."""
    h, w = mask.shape
    image = np.zeros((h + 2, w + 2), np.float64)
    np.negative(distance, out=image[1:-1, 1:-1])
    inside = np.zeros((h + 2, w + 2), np.int8)
    inside[1:-1, 1:-1] = mask
    labels = np.zeros((h + 2, w + 2), np.int32)
    rows, cols = seeds[:, 0] + 1, seeds[:, 1] + 1
    labels[rows, cols] = np.arange(1, len(seeds) + 1, dtype=np.int32) * mask[rows - 1, cols - 1]
    watershed_raveled(
        image.ravel(),
        np.flatnonzero(labels),
        _neighbours(h + 2, w + 2),
        inside.ravel(),
        np.array(image.strides, dtype=np.intp) // image.itemsize,
        0.0,
        labels.ravel(),
        False,
    )
    return labels[1:-1, 1:-1].copy()


@cache
def _neighbours(height: int, width: int) -> np.ndarray:
    """The 4-connected neighbours' offsets in a raveled image, as scikit-image orders them."""
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    return np.asarray(_offsets_to_raveled_neighbors((height, width), cross, center=(1, 1)))


def _seeds(
    distance: np.ndarray,
    inside: np.ndarray,
    area: int,
    footprint: np.ndarray,
    spacing: int,
    floor: float,
) -> list[tuple[int, int]]:
    """One object's watershed seeds (row, column), highest first: ``peak_local_max`` of its
    distance map with ``min_distance=spacing``, as scikit-image finds them. ``area``: the
    object's pixel count. A handful of NumPy calls an object: a field has ten or so."""
    values = np.where(inside, distance, _OUTSIDE)
    if values.size == 1:
        peaks = values > floor
    else:
        peaks = values == cv2.dilate(values, footprint, borderType=cv2.BORDER_REPLICATE)
        peaks &= inside
        if np.count_nonzero(peaks) == area:
            # A flat object: its pixels that an opening removes are its peaks.
            peaks = inside & ~masks.opening(inside)
        # Distances are never negative, so no pixel outside the object passes.
        peaks &= values > floor
    width = values.shape[1]
    at = np.flatnonzero(peaks)  # raster order, as np.nonzero
    if len(at) < 2:
        return [divmod(int(k), width) for k in at]
    # Highest first; equal heights in raster order.
    ranked = at[np.argsort(-values.ravel()[at], kind="stable")].tolist()
    points = [divmod(k, width) for k in ranked]
    if spacing <= 1:
        return points
    # A handful of candidates: plain Python beats NumPy's per-call cost here.
    kept = [points[0]]
    for row, col in points[1:]:
        if all(max(abs(r - row), abs(c - col)) >= spacing for r, c in kept):
            kept.append((row, col))
    return kept


Region = tuple[int, tuple[slice, ...], int, tuple[float, float]]


def cell_regions(labels: np.ndarray) -> list[Region]:
    """Each label's number, box (row and column slices), pixel count and centre (x, y), in
    label order."""
    flat = labels.ravel()
    labelled = np.flatnonzero(flat)
    if not len(labelled):
        return []
    own = flat[labelled]
    rows, cols = np.divmod(labelled, labels.shape[1])
    counts = np.bincount(own)
    xs = np.bincount(own, cols.astype(np.float64), len(counts))
    ys = np.bincount(own, rows.astype(np.float64), len(counts))
    regions: list[Region] = []
    for i, where in enumerate(ndi.find_objects(labels), start=1):
        if where is not None:
            n = int(counts[i])
            x0, y0 = where[1].start, where[0].start
            # The mean within the box, then the box's corner: the very sums NumPy's mean makes.
            x = (xs[i] - n * x0) / n + x0 + 0.5
            y = (ys[i] - n * y0) / n + y0 + 0.5
            regions.append((i, where, n, (float(x), float(y))))
    return regions


def segment(image: Image.Image, work_side: int = WORK_SIDE) -> Segmentation:
    """Segment the leukocytes of an RGB photograph.

    Returns the mask at the image's own size and one ``Cell`` per leukocyte
    (bounding box, area and centroid in the image's pixel coordinates).
    """
    small = foreground_mask(pixels(downscale(image, work_side)))
    labels = split_cells(small)
    width, height = image.size
    sx, sy = width / small.shape[1], height / small.shape[0]
    cells: list[Cell] = []
    min_area = max(1.0, MIN_OBJECT_FRACTION * small.size)
    for _, found, area, (cx, cy) in cell_regions(labels):
        if area < min_area:
            continue  # a sliver the watershed cut off a cell
        cells.append(
            Cell(
                bbox=(
                    int(found[1].start * sx),
                    int(found[0].start * sy),
                    min(width, int(np.ceil(found[1].stop * sx))),
                    min(height, int(np.ceil(found[0].stop * sy))),
                ),
                area=int(round(area * sx * sy)),
                centroid=(round(float(cx * sx), 1), round(float(cy * sy), 1)),
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
    edge = mask & ~masks.erosion(mask, iterations=2)
    pixels = np.array(shown, dtype=np.uint8)
    pixels[edge] = OUTLINE_COLOR
    return png_bytes(Image.fromarray(pixels))
