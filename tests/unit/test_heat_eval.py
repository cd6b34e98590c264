"""The heat report's sampling and summary (the Grad-CAM side is in test_explain.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.classes import CLASS_IDS
from training.data import Sample
from training.heat_eval import heat_markdown, spread, summarise


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
    assert len(picked) == 8 and len({s.path for s in picked}) == 8


def test_summary_means_and_majority_share() -> None:
    found = [(0, (0.6, 0.01, 0.2)), (0, (0.2, 0.03, 0.1)), (1, None), (2, (0.9, 0.0, 0.3))]
    out = summarise(found)
    assert out["overall"]["n"] == 3
    assert out["empty_maps"] == 1 and out["n_images"] == 4
    assert out["overall"]["on_cells"] == pytest.approx((0.6 + 0.2 + 0.9) / 3)
    assert out["overall"]["majority_on_cells"] == pytest.approx(2 / 3)
    assert out["per_class"]["benign"]["corner"] == pytest.approx(0.02)
    assert out["per_class"]["early_pre_b"] == {"n": 0}
    table = heat_markdown({"m": {"architecture": "M", "layer": "conv", **out}})
    assert "| M | `conv` | 1 of 4 | 0.567 | 0.200 | 67% |" in table
    assert "nan" in table  # a class with no heat is shown as missing, not as zero
