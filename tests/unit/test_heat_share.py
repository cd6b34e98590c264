"""The share of Grad-CAM heat on the segmented leukocytes."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.explanation.heat_share import heat_share
from app.core.explanation.segmentation import Segmentation


def cells(mask: np.ndarray) -> Segmentation:
    return Segmentation(work_mask=mask, size=(mask.shape[1], mask.shape[0]), cells=[])


def test_heat_on_the_cells_counts_as_on_them() -> None:
    mask = np.zeros((224, 224), bool)
    mask[80:140, 80:140] = True
    heat = np.zeros((56, 56), np.float32)
    heat[24:32, 24:32] = 1.0  # the middle of the cell, at the heatmap's own size
    share = heat_share(heat, cells(mask))
    assert share is not None and share.on_cells == pytest.approx(1.0)
    assert not share.mostly_elsewhere
    assert share.cells_area == pytest.approx(((60 + 8) ** 2) / 224**2, rel=0.05)


def test_heat_on_the_background_is_mostly_elsewhere() -> None:
    mask = np.zeros((224, 224), bool)
    mask[:40, :40] = True
    heat = np.zeros((224, 224), np.float32)
    heat[150:, 150:] = 1.0
    share = heat_share(heat, cells(mask))
    assert share is not None and share.on_cells == pytest.approx(0.0)
    assert share.mostly_elsewhere


def test_an_empty_heatmap_has_no_share() -> None:
    assert heat_share(np.zeros((14, 14), np.float32), cells(np.ones((224, 224), bool))) is None
