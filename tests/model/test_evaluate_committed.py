"""The committed models, scored by the evaluate command on the shared data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.classes import CLASS_IDS
from tests.support.models import ROOT
from training.architectures import FIELD_ARCHITECTURES

MODELS = ROOT / "models"

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not os.environ.get("ALL_DATA_DIR"), reason="ALL_DATA_DIR is not set"),
    pytest.mark.skipif(not (MODELS / "lenet.keras").is_file(), reason="no committed models"),
]


def _evaluate(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "training", "evaluate", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_every_committed_model_is_far_above_chance_on_the_test_split() -> None:
    results = _evaluate("--split", "test")
    assert [r["model"] for r in results] == sorted(FIELD_ARCHITECTURES)
    for r in results:
        assert r["n_images"] > 400
        assert r["accuracy"] > 0.85, r["model"]
        assert r["macro_f1"] > 0.8, r["model"]
        assert set(r["per_class"]) == set(CLASS_IDS)
        assert len(r["confusion_matrix"]) == 4
        assert sum(map(sum, r["confusion_matrix"])) == r["n_images"]


def test_metadata_test_metrics_match_a_fresh_evaluation() -> None:
    (result,) = _evaluate("--split", "test", "--model", "lenet")
    meta = json.loads((MODELS / "lenet.json").read_text())
    assert result["accuracy"] == pytest.approx(meta["test_metrics"]["accuracy"], abs=1e-6)
    assert result["confusion_matrix"] == meta["test_metrics"]["confusion_matrix"]


def test_default_evaluates_every_image_of_the_folder() -> None:
    (result,) = _evaluate("--model", "lenet")
    n_files = sum(1 for p in Path(os.environ["ALL_DATA_DIR"]).glob("original/*/*") if p.is_file())
    assert result["n_images"] == n_files
    assert result["accuracy"] > 0.85
