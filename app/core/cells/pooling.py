"""A field's answer from its cells: attention pooling of the cells' logits.

A cell model gives each leukocyte class logits and an attention score. The field's
logits are the attention-weighted mean of its cells' logits (weights: softmax of the
scores over the field), so a few blast-like cells can carry a field of normal ones.
Training pools the same way (``training.cell_mil.AttentionPool``).
"""

from __future__ import annotations

import numpy as np


def attention_weights(scores: np.ndarray) -> np.ndarray:
    """Softmax of a field's attention scores (n,) over its cells."""
    z = np.asarray(scores, np.float64) - np.max(scores)
    e = np.exp(z)
    return np.asarray(e / e.sum())


def pool(logits: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The field's logits (k,) from its cells' logits (n, k) and scores (n,), and the
    weights; a field without cells has no answer (ValueError)."""
    if len(logits) == 0:
        raise ValueError("a field without cells has no pooled answer")
    weights = attention_weights(scores)
    return np.asarray(weights @ np.asarray(logits, np.float64)), weights
