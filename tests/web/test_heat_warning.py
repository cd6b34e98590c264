"""The result page's heat warning: density against the card's threshold, in plain words."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask import Flask, render_template

from app.core.explanation.heat_share import DEFAULT_MIN_DENSITY, HeatShare
from app.core.model_card import HeatRuleSpec
from app.core.prediction import Prediction
from app.core.service import InferenceService
from app.web.analysis.presenter import HEAT_NO_CELLS, HEAT_UNFITTED, heat_warning, result_page
from tests.support.models import field_cards


@pytest.fixture(scope="module")
def explained(inference_service: InferenceService, images) -> Prediction:
    return inference_service.explain(inference_service.classify(images.make(size=(224, 224))))


def _with(
    p: Prediction, share: HeatShare | None, rule: HeatRuleSpec | None, threshold: float
) -> Prediction:
    assert p.explanation is not None
    return replace(
        p,
        model=replace(p.model, heat_rule=rule),
        min_heat_density=threshold,
        explanation=replace(p.explanation, heat_share=share),
    )


FITTED = HeatRuleSpec(min_density=0.5, val_fires_on_correct=0.1)


def test_heat_dense_enough_on_the_cells_is_not_warned(explained: Prediction) -> None:
    p = _with(explained, HeatShare(on_cells=0.3, cells_area=0.5), FITTED, 0.5)
    assert p.heat_check == "on_cells"
    assert heat_warning(p) is None
    assert result_page(p).heat_warning is None


def test_sparse_heat_is_warned_with_its_figures_and_what_they_are_measured_against(
    explained: Prediction,
) -> None:
    p = _with(explained, HeatShare(on_cells=0.06, cells_area=0.2), FITTED, 0.5)
    text = heat_warning(p)
    assert text is not None
    assert result_page(p).heat_warning == text
    assert text.startswith("6% of the heat lies on white cells that cover 20% of the field")
    assert "than in 90% of this model's correct answers on validation images" in text
    assert "not that the answer is wrong" in text


def test_without_a_fitted_rule_the_default_is_named_plainly(explained: Prediction) -> None:
    p = _with(explained, HeatShare(on_cells=0.1, cells_area=0.2), None, DEFAULT_MIN_DENSITY)
    text = heat_warning(p)
    assert text is not None
    assert HEAT_UNFITTED in text
    assert "validation" not in text


def test_no_cells_found_says_the_heat_cannot_be_judged(explained: Prediction) -> None:
    p = _with(explained, HeatShare(on_cells=0.0, cells_area=0.0), FITTED, 0.5)
    assert p.heat_check == "no_cells"
    assert heat_warning(p) == HEAT_NO_CELLS


def test_an_empty_heatmap_says_nothing(explained: Prediction) -> None:
    p = _with(explained, None, FITTED, 0.5)
    assert p.heat_check is None
    assert heat_warning(p) is None


def test_each_served_model_carries_its_cards_threshold(
    inference_service: InferenceService, images
) -> None:
    # A cell model's heat is drawn on its cells only, so the background warning is the field
    # models' (docs/decisions.md).
    for card in field_cards(inference_service):
        p = inference_service.classify(images.make(size=(224, 224)), card.name)
        assert card.heat_rule is not None, f"{card.name} has no fitted heat rule"
        assert p.min_heat_density == card.heat_rule.min_density


def test_the_line_beside_the_verdict_is_shown_for_sparse_heat_only(
    app: Flask, explained: Prediction
) -> None:
    def page(p: Prediction) -> str:
        with app.test_request_context("/"):
            return render_template("result.html", result=result_page(p))

    answered = replace(explained, ood=None)  # the synthetic field is not what is tested here
    sparse = _with(answered, HeatShare(on_cells=0.06, cells_area=0.2), FITTED, 0.5)
    no_cells = _with(answered, HeatShare(on_cells=0.0, cells_area=0.0), FITTED, 0.5)
    assert sparse.status != "out_of_distribution"
    assert 'id="verdict-heat-warning"' in page(sparse)
    shown = page(no_cells)
    assert 'id="verdict-heat-warning"' not in shown
    assert HEAT_NO_CELLS in shown
