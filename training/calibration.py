"""Temperature scaling fitted on validation logits."""

from __future__ import annotations

import numpy as np

from app.core.model_store import softmax


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(logits.astype(np.float64) / temperature)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] minimising validation NLL (grid, then refine)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 200))
    best = min(grid, key=lambda t: nll(logits, y, t))
    fine = np.linspace(best / 1.05, best * 1.05, 101)
    return float(min(fine, key=lambda t: nll(logits, y, t)))
