"""The share of Grad-CAM heat on the segmented leukocytes, its density, and the warning's rule."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.explanation.heat_share import (
    DEFAULT_MIN_DENSITY,
    HeatShare,
    heat_share,
    min_density,
)
from app.core.explanation.segmentation import Segmentation
from app.core.model_card import HeatRuleSpec, ModelCard


def cells(mask: np.ndarray) -> Segmentation:
    return Segmentation(work_mask=mask, size=(mask.shape[1], mask.shape[0]), cells=[])


def test_heat_on_the_cells_counts_as_on_them() -> None:
    mask = np.zeros((224, 224), bool)
    mask[80:140, 80:140] = True
    heat = np.zeros((56, 56), np.float32)
    heat[24:32, 24:32] = 1.0  # the middle of the cell, at the heatmap's own size
    share = heat_share(heat, cells(mask))
    assert share is not None
    assert share.on_cells == pytest.approx(1.0)
    assert share.cells_area == pytest.approx(((60 + 8) ** 2) / 224**2, rel=0.05)
    assert share.density == pytest.approx(1 / share.cells_area)
    assert share.check(DEFAULT_MIN_DENSITY) == "on_cells"


def test_heat_on_the_background_is_elsewhere() -> None:
    mask = np.zeros((224, 224), bool)
    mask[:40, :40] = True
    heat = np.zeros((224, 224), np.float32)
    heat[150:, 150:] = 1.0
    share = heat_share(heat, cells(mask))
    assert share is not None
    assert share.on_cells == pytest.approx(0.0)
    assert share.density == pytest.approx(0.0)
    assert share.check(DEFAULT_MIN_DENSITY) == "elsewhere"


def test_uniform_heat_is_as_dense_on_the_cells_as_anywhere() -> None:
    mask = np.zeros((224, 224), bool)
    mask[60:160, 60:160] = True
    share = heat_share(np.ones((14, 14), np.float32), cells(mask))
    assert share is not None
    assert share.density == pytest.approx(1.0)


def test_density_is_the_share_of_heat_over_the_share_of_area() -> None:
    share = HeatShare(on_cells=0.3, cells_area=0.15)
    assert share.density == pytest.approx(2.0)
    # Less than half the heat on the cells, yet twice as dense there as over the field.
    assert share.check(1.0) == "on_cells"
    assert share.check(2.5) == "elsewhere"


def test_the_threshold_itself_is_not_a_warning() -> None:
    assert HeatShare(on_cells=0.25, cells_area=0.5).check(0.5) == "on_cells"
    assert HeatShare(on_cells=0.2499, cells_area=0.5).check(0.5) == "elsewhere"


def test_no_cells_found_cannot_be_judged() -> None:
    share = heat_share(np.ones((14, 14), np.float32), cells(np.zeros((224, 224), bool)))
    assert share is not None
    assert share.cells_area == 0.0
    assert share.density is None
    assert share.check(0.0) == "no_cells"
    assert share.check(10.0) == "no_cells"


def test_an_empty_heatmap_has_no_share() -> None:
    assert heat_share(np.zeros((14, 14), np.float32), cells(np.ones((224, 224), bool))) is None


def test_the_threshold_comes_from_the_card_or_the_default() -> None:
    card = ModelCard(name="m", version="1", input_size=64)
    assert card.heat_rule is None
    assert min_density(card) == DEFAULT_MIN_DENSITY == HeatRuleSpec().min_density
    card.heat_rule = HeatRuleSpec(min_density=0.3)
    assert min_density(card) == 0.3
