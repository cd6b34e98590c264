"""Per-field stain normalisation, in optical density.

A field's white point is its bright background; optical density (OD) is -log of
the colour over that white point, so light source and white balance drop out.
Each channel's OD is then scaled so the field's leukocytes have one reference
mean OD: a paler, stronger, bluer or redder stain gives the same cells. Every
cell of a field is normalised with the same factors, so their differences stay.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.core.imaging import unit_floats
from app.core.ranks import median

# Mean OD (red, green, blue) of the leukocytes after normalisation: about the data set's.
REFERENCE_OD = np.array([0.40, 0.60, 0.05], np.float32)
# A channel whose cells absorb less than this (blue, in Giemsa) is not scaled up.
MIN_OD = 0.05
# Densities beyond this are sensor floor, not stain.
MAX_OD = 3.0


# Every 8-bit value in each channel: a function of 8-bit pixels is a table of 256 per channel.
_CODES = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def white_point(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The background's colour: the median of the brighter half of the non-cell pixels.
    ``rgb`` is floats in [0, 1], or 8-bit (read as ``unit_floats`` of it, the same answer)."""
    eight_bit = rgb.dtype == np.uint8
    planes = cv2.split(unit_floats(rgb) if eight_bit else np.asarray(rgb, np.float32))
    lum = (planes[0] + planes[1] + planes[2]) / np.float32(3)
    background = ~cells if (~cells).any() else np.ones(cells.shape, bool)
    bright = background & (lum >= median(lum[background]))
    if eight_bit:  # a channel's median from its 256-bin histogram: the same value, far sooner
        medians = [_median_code(rgb[..., c][bright]) for c in range(3)]
    else:
        medians = [median(p[bright]) for p in planes]
    return np.maximum(np.array(medians, np.float32), 1e-3)


def _median_code(codes: np.ndarray) -> float:
    """``ranks.median(unit_floats(codes))`` of 8-bit values, by counting them."""
    n = codes.size
    cumulative = np.cumsum(np.bincount(codes, minlength=256))
    below, above = np.searchsorted(cumulative, [(n - 1) // 2, n // 2], side="right")
    values = unit_floats(np.array([below, above], np.uint8))
    if n % 2:
        return float(values[1])
    return float((values[0] + values[1]) / np.float32(2))


def optical_density(rgb: np.ndarray, white: np.ndarray) -> np.ndarray:
    return np.asarray(-np.log(np.clip(rgb / white, np.exp(-MAX_OD), 1.0)), np.float32)


def stain_scale(rgb: np.ndarray, cells: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Each channel's factor on optical density that brings the ``cells`` to REFERENCE_OD
    (ones when there are none). ``rgb`` is floats in [0, 1], or 8-bit (as ``white_point``)."""
    if not cells.any():
        return np.ones(3, np.float32)
    if rgb.dtype == np.uint8:  # each pixel's density from its channel's table
        table = optical_density(unit_floats(_CODES), white)
        density = looked_up(table, rgb[cells])
    else:
        density = optical_density(rgb[cells], white)
    return np.asarray(REFERENCE_OD / np.maximum(density.mean(axis=0), MIN_OD), np.float32)


def stained(rgb: np.ndarray, white: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Pixels of a field (any shape ending in 3) with the field's stain normalisation;
    8-bit pixels are read as ``unit_floats`` of them, each channel by a table of 256."""
    if rgb.dtype == np.uint8:
        return looked_up(stain_table(white, scale), rgb)
    return np.asarray(np.exp(-(optical_density(rgb, white) * scale)), np.float32)


def stain_table(white: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The stain normalisation of every 8-bit value, per channel (256 x 3 float32)."""
    return stained(unit_floats(_CODES), white, scale)


def looked_up(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[code, channel]`` of every 8-bit pixel (any shape ending in 3)."""
    out = np.empty(codes.shape, table.dtype)
    for channel in range(3):
        out[..., channel] = table[:, channel].take(codes[..., channel])
    return out


def normalise_stain(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The RGB float image in [0, 1] with its stain brought to ``REFERENCE_OD`` on ``cells``
    (a boolean mask of its leukocytes); unchanged but for the white point when none."""
    white = white_point(rgb, cells)
    return stained(rgb, white, stain_scale(rgb, cells, white))
