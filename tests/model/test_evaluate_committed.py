"""The committed models, scored by the evaluate command on the shared data set: its test
split once for every test that reads it, and a small folder of its photographs for the
default of scoring every image of a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.classes import CLASS_IDS
from tests.support.models import ROOT, data_root
from training.architectures import FIELD_ARCHITECTURES

MODELS = ROOT / "models"
PER_CLASS = 8

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


@pytest.fixture(scope="module")
def on_test_split() -> list[dict[str, Any]]:
    """Every field model scored on the test split, by one run of the command."""
    return _evaluate("--split", "test")


def test_every_committed_model_is_far_above_chance_on_the_test_split(
    on_test_split: list[dict[str, Any]],
) -> None:
    results = on_test_split
    assert [r["model"] for r in results] == sorted(FIELD_ARCHITECTURES)
    for r in results:
        assert r["n_images"] > 400
        assert r["accuracy"] > 0.85, r["model"]
        assert r["macro_f1"] > 0.8, r["model"]
        assert set(r["per_class"]) == set(CLASS_IDS)
        assert len(r["confusion_matrix"]) == 4
        assert sum(map(sum, r["confusion_matrix"])) == r["n_images"]


def test_metadata_test_metrics_match_a_fresh_evaluation(
    on_test_split: list[dict[str, Any]],
) -> None:
    (result,) = [r for r in on_test_split if r["model"] == "lenet"]
    meta = json.loads((MODELS / "lenet.json").read_text())
    assert result["accuracy"] == pytest.approx(meta["test_metrics"]["accuracy"], abs=1e-6)
    assert result["confusion_matrix"] == meta["test_metrics"]["confusion_matrix"]


def test_default_evaluates_every_image_of_the_folder(tmp_path: Path) -> None:
    # A folder laid out as the data set, of the first photographs of each class.
    root = data_root()
    assert root is not None
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        (tmp_path / folder.name).mkdir()
        for photograph in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            (tmp_path / folder.name / photograph.name).symlink_to(photograph)
    (result,) = _evaluate("--model", "lenet", "--data-dir", str(tmp_path))
    n_files = sum(1 for p in tmp_path.glob("*/*") if p.is_file())
    assert result["n_images"] == n_files
    assert result["accuracy"] > 0.85
