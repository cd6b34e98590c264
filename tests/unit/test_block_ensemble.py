"""Models averaged on their saved held-out-block records: the normalised geometric mean of
their probabilities, field by field."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.block_ensemble import combined_records


def run(*records: tuple[str, int, str, list[float] | None]) -> dict[str, Any]:
    return {
        "records": [
            {"file": f, "class_id": "benign", "fold": fold, "role": role, "probabilities": p}
            for f, fold, role, p in records
        ]
    }


def test_each_field_gets_the_normalised_geometric_mean() -> None:
    a = run(("x.jpg", 0, "test", [0.9, 0.05, 0.03, 0.02]))
    b = run(("x.jpg", 0, "test", [0.2, 0.6, 0.1, 0.1]))
    (combined,) = combined_records([a, b])
    expected = np.sqrt(np.array([0.9, 0.05, 0.03, 0.02]) * np.array([0.2, 0.6, 0.1, 0.1]))
    np.testing.assert_allclose(combined["probabilities"], expected / expected.sum())
    assert combined["file"] == "x.jpg"
    assert combined["role"] == "test"


def test_one_model_alone_keeps_its_answers() -> None:
    a = run(("x.jpg", 0, "val", [0.1, 0.7, 0.1, 0.1]), ("y.jpg", 1, "test", [0.4, 0.3, 0.2, 0.1]))
    combined = combined_records([a])
    for mine, theirs in zip(combined, a["records"], strict=True):
        np.testing.assert_allclose(mine["probabilities"], theirs["probabilities"])


def test_an_unanswered_field_stays_unanswered_and_a_missing_one_is_left_out() -> None:
    a = run(("x.jpg", 0, "test", None), ("y.jpg", 0, "test", [0.5, 0.5, 0.0, 0.0]))
    b = run(("x.jpg", 0, "test", [0.5, 0.5, 0.0, 0.0]))
    (combined,) = combined_records([a, b])
    assert combined["file"] == "x.jpg"
    assert combined["probabilities"] is None
