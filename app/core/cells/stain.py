"""Per-field stain normalisation, in optical density.

A field's white point is its bright background; optical density (OD) is -log of
the colour over that white point, so light source and white balance drop out.
Each channel's OD is then scaled so the field's leukocytes have one reference
mean OD: a paler, stronger, bluer or redder stain gives the same cells. Every
cell of a field is normalised with the same factors, so their differences stay.
"""

from __future__ import annotations

import numpy as np

# Mean OD (red, green, blue) of the leukocytes after normalisation: about the data set's.
REFERENCE_OD = np.array([0.40, 0.60, 0.05], np.float32)
# A channel whose cells absorb less than this (blue, in Giemsa) is not scaled up.
MIN_OD = 0.05
# Densities beyond this are sensor floor, not stain.
MAX_OD = 3.0


def white_point(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The background's colour: the median of the brighter half of the non-cell pixels."""
    background = rgb[~cells] if (~cells).any() else rgb.reshape(-1, 3)
    lum = background.mean(-1)
    bright = background[lum >= np.median(lum)]
    return np.asarray(np.maximum(np.median(bright, axis=0), 1e-3), np.float32)


def optical_density(rgb: np.ndarray, white: np.ndarray) -> np.ndarray:
    return np.asarray(-np.log(np.clip(rgb / white, np.exp(-MAX_OD), 1.0)), np.float32)


def normalise_stain(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The RGB float image in [0, 1] with its stain brought to ``REFERENCE_OD`` on ``cells``
    (a boolean mask of its leukocytes); unchanged but for the white point when none."""
    od = optical_density(rgb, white_point(rgb, cells))
    if cells.any():
        mean = od[cells].mean(axis=0)
        od = od * (REFERENCE_OD / np.maximum(mean, MIN_OD))
    return np.asarray(np.exp(-od), np.float32)
