"""The heat report's sampling and summary, and the background warning's fit (the Grad-CAM
side is in test_explain.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.classes import CLASS_IDS
from app.core.explanation.heat_share import HeatShare
from app.core.model_card import HeatRuleSpec, ModelCard
from training.data import DataSetError, Sample
from training.heat_eval import (
    Answer,
    Rate,
    fires_old,
    fit_heat_rule,
    fit_min_density,
    heat_markdown,
    spread,
    summarise,
    warning_markdown,
    warning_result,
)


def _samples(n_per_class: int) -> list[Sample]:
    return [
        Sample(Path(f"/d/{c}/{i:03d}.jpg"), c, f"{c}{i}")
        for c in CLASS_IDS
        for i in range(n_per_class)
    ]


def test_spread_takes_evenly_spaced_files_of_every_class() -> None:
    picked = spread(_samples(9), 3)
    assert len(picked) == 12
    early = [s.path.name for s in picked if s.class_id == "early_pre_b"]
    assert early == ["000.jpg", "004.jpg", "008.jpg"]


def test_spread_with_fewer_files_than_asked_takes_them_all_once() -> None:
    picked = spread(_samples(2), 5)
    assert len(picked) == 8
    assert len({s.path for s in picked}) == 8


def test_summary_means_and_majority_share() -> None:
    found = [(0, (0.6, 0.01, 0.2)), (0, (0.2, 0.03, 0.1)), (1, None), (2, (0.9, 0.0, 0.3))]
    out = summarise(found)
    assert out["overall"]["n"] == 3
    assert out["empty_maps"] == 1
    assert out["n_images"] == 4
    assert out["overall"]["on_cells"] == pytest.approx((0.6 + 0.2 + 0.9) / 3)
    assert out["overall"]["majority_on_cells"] == pytest.approx(2 / 3)
    assert out["per_class"]["benign"]["corner"] == pytest.approx(0.02)
    assert out["per_class"]["early_pre_b"] == {"n": 0}
    table = heat_markdown({"m": {"architecture": "M", "layer": "conv", **out}})
    assert "| M | `conv` | 1 of 4 | 0.567 | 0.200 | 67% |" in table
    assert "nan" in table  # a class with no heat is shown as missing, not as zero


def _share(density: float, area: float = 0.2) -> HeatShare:
    return HeatShare(on_cells=density * area, cells_area=area)


def _densities(values: list[float]) -> list[HeatShare | None]:
    return [_share(v) for v in values]


def test_the_fit_fires_on_at_most_a_tenth_of_the_correct_answers() -> None:
    densities = [0.1 * i for i in range(1, 21)]  # 0.1 .. 2.0, in no particular order
    shares = _densities(densities[::-1])
    threshold = fit_min_density(shares)
    assert threshold == pytest.approx(0.25)  # between the 2nd and 3rd lowest: 2 of 20 fire
    assert sum(d < threshold for d in densities) == 2


def test_the_fit_takes_the_highest_threshold_the_cost_allows() -> None:
    shares = _densities([0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    assert fit_min_density(shares, max_fires=0.3) == pytest.approx(0.7)
    assert fit_min_density(shares, max_fires=0.1) == pytest.approx(0.3)
    assert fit_min_density(shares, max_fires=0.05) == pytest.approx(0.2)  # fires on none


def test_ties_at_the_threshold_never_exceed_the_allowed_share() -> None:
    shares = _densities([0.5] * 10)
    threshold = fit_min_density(shares, max_fires=0.2)
    assert sum(s.check(threshold) == "elsewhere" for s in shares if s is not None) == 0


def test_answers_without_a_density_count_but_never_fire() -> None:
    measured = _densities([0.2, 0.4, 0.6, 0.8, 1.0])
    unmeasured: list[HeatShare | None] = [None] * 4 + [HeatShare(0.0, 0.0)] * 11
    # 20 answers allow 2 warnings, though only 5 have a density.
    assert fit_min_density(measured + unmeasured) == pytest.approx(0.5)
    with pytest.raises(DataSetError):
        fit_min_density(unmeasured)


def test_wilson_interval_matches_known_values() -> None:
    low, high = Rate(5, 10).wilson() or (0.0, 0.0)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = Rate(0, 10).wilson() or (1.0, 1.0)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)
    assert Rate(0, 0).wilson() is None
    assert Rate(0, 0).share is None
    assert Rate(3, 4).text() == "3 of 4 (75%; 30%-95%)"


def _answers() -> list[Answer]:
    correct = [Answer(True, False, _share(d)) for d in (0.1, 0.5, 1.0, 1.5, 2.0) * 2]
    wrong = [Answer(False, False, _share(0.2)), Answer(False, False, _share(3.0))]
    uncertain_wrong = [Answer(False, True, _share(0.1))]
    no_cells = [Answer(True, False, HeatShare(0.0, 0.0))]
    return correct + wrong + uncertain_wrong + no_cells


def test_the_fitted_rule_records_its_validation_figures() -> None:
    rule = fit_heat_rule(_answers())
    # 11 correct confident answers allow 1 warning: between the two lowest densities.
    assert rule.min_density == pytest.approx(0.1)
    rule = fit_heat_rule(_answers(), max_fires=0.2)
    assert rule.min_density == pytest.approx(0.3)  # 2 of 11 allowed: the two at 0.1
    assert (rule.val_correct, rule.val_wrong, rule.val_no_cells) == (11, 2, 1)
    assert rule.val_fires_on_correct == pytest.approx(round(2 / 11, 4))
    assert rule.val_fires_on_wrong == pytest.approx(0.5)
    assert "20%" in rule.method


def test_the_warning_report_sets_the_new_rule_beside_the_old() -> None:
    card = ModelCard(name="m", architecture="M", version="1", input_size=64)
    card.heat_rule = HeatRuleSpec(min_density=0.3)
    result = warning_result(card, _answers())
    assert result.new["correct"] == Rate(2, 11)
    assert result.new["wrong"] == Rate(1, 2)
    assert result.new["wrong_any"] == Rate(2, 3)
    # The old rule: under half the heat on the cells (all of these shares, and no cells).
    assert result.old["correct"] == Rate(11, 11)
    assert not fires_old(_share(3.0, area=0.2))
    assert fires_old(_share(2.0, area=0.2))
    assert result.no_cells == 1
    text = warning_markdown({"m": result})
    assert "| M | density < 0.3 (fitted on validation) | 2 of 11 (18%;" in text
    assert "| M | old: heat on cells < 50% | 11 of 11 (100%;" in text
    unfitted = warning_result(ModelCard(name="m", version="1", input_size=64), _answers())
    assert unfitted.min_density == 1.0
    assert not unfitted.fitted
