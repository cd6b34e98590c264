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

from app.core.ranks import median

# Mean OD (red, green, blue) of the leukocytes after normalisation: about the data set's.
REFERENCE_OD = np.array([0.40, 0.60, 0.05], np.float32)
# A channel whose cells absorb less than this (blue, in Giemsa) is not scaled up.
MIN_OD = 0.05
# Densities beyond this are sensor floor, not stain.
MAX_OD = 3.0


def white_point(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The background's colour: the median of the brighter half of the non-cell pixels."""
    planes = cv2.split(np.ascontiguousarray(rgb, dtype=np.float32))
    lum = (planes[0] + planes[1] + planes[2]) / np.float32(3)
    background = ~cells if (~cells).any() else np.ones(cells.shape, bool)
    bright = background & (lum >= median(lum[background]))
    return np.maximum(np.array([median(p[bright]) for p in planes], np.float32), 1e-3)


def optical_density(rgb: np.ndarray, white: np.ndarray) -> np.ndarray:
    return np.asarray(-np.log(np.clip(rgb / white, np.exp(-MAX_OD), 1.0)), np.float32)


def stain_scale(rgb: np.ndarray, cells: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Each channel's factor on optical density that brings the ``cells`` to REFERENCE_OD
    (ones when there are none)."""
    if not cells.any():
        return np.ones(3, np.float32)
    mean = optical_density(rgb[cells], white).mean(axis=0)
    return np.asarray(REFERENCE_OD / np.maximum(mean, MIN_OD), np.float32)


def stained(rgb: np.ndarray, white: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Pixels of a field (any shape ending in 3) with the field's stain normalisation."""
    return np.asarray(np.exp(-(optical_density(rgb, white) * scale)), np.float32)


def normalise_stain(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The RGB float image in [0, 1] with its stain brought to ``REFERENCE_OD`` on ``cells``
    (a boolean mask of its leukocytes); unchanged but for the white point when none."""
    white = white_point(rgb, cells)
    return stained(rgb, white, stain_scale(rgb, cells, white))
