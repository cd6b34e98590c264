"""Temperature scaling: fitting recovers a known temperature; it never changes the ranking."""

from __future__ import annotations

import numpy as np

from app.core.model_store import softmax
from training.calibration import fit_temperature, nll
from training.metrics import expected_calibration_error


def _sample_labels(logits: np.ndarray, temperature: float, seed: int) -> np.ndarray:
    """Labels drawn from softmax(logits / temperature): the truth is that temperature."""
    p = softmax(logits / temperature)
    u = np.random.default_rng(seed).random((len(p), 1))
    return (u > np.cumsum(p, axis=1)).sum(axis=1)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (10000, 4))
    for true_t in (0.5, 2.5):
        y = _sample_labels(logits, true_t, seed=int(true_t * 10))
        fitted = fit_temperature(logits, y)
        assert abs(fitted - true_t) / true_t < 0.06, (true_t, fitted)
        assert nll(logits, y, fitted) <= nll(logits, y, 1.0) + 1e-9


def test_temperature_scaling_lowers_the_ece_of_overconfident_logits() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (5000, 4))
    y = _sample_labels(logits, 1.0, seed=2)
    overconfident = 3.0 * logits
    t = fit_temperature(overconfident, y)
    before = expected_calibration_error(softmax(overconfident), y)
    after = expected_calibration_error(softmax(overconfident / t), y)
    assert after < before / 2
