"""The "uncertain" rule: a calibrated top-class probability too low for a verdict."""

from __future__ import annotations

import numpy as np


def is_uncertain(probs: np.ndarray, uncertain_below: float | None) -> bool:
    """True when the top probability is below ``uncertain_below`` (None: never uncertain)."""
    if uncertain_below is None:
        return False
    return bool(float(np.max(probs)) < uncertain_below)
