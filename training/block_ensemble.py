"""Several models' held-out-block records combined: each field's probabilities the normalised
geometric mean of the models' (an equal-weight average of their log probabilities).

Read from the records the cross-validations saved (``models/blocks/<name>.json``): no model
is trained, and the folds are the same for every model, so a field's records line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# A probability of 0 would make the mean minus infinity: floored first.
FLOOR = 1e-6


def combined_records(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of ``runs`` (saved cross-validations) as one model's: a field any of them
    left unanswered stays unanswered; a field missing from any run is left out."""
    keyed = [{(r["file"], r["fold"], r["role"]): r for r in run["records"]} for run in runs]
    combined = []
    for key, first in keyed[0].items():
        own = [records.get(key) for records in keyed]
        if any(r is None for r in own):
            continue
        probabilities = [r["probabilities"] for r in own if r is not None]
        combined.append({**first, "probabilities": _mean(probabilities)})
    return combined


def _mean(probabilities: list[list[float] | None]) -> list[float] | None:
    if any(p is None for p in probabilities):
        return None
    logs = np.mean([np.log(np.maximum(np.asarray(p, np.float64), FLOOR)) for p in probabilities], 0)
    e = np.exp(logs - logs.max())
    return [float(v) for v in e / e.sum()]
