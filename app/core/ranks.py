"""Exact quantiles and medians of an image's pixels, faster than a partial sort of them all.

A histogram of the values finds the bin that holds each wanted rank; only that bin's values
are then sorted. The results are the very values ``np.partition``, ``np.quantile`` and
``np.median`` give (``tests/unit/test_ranks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Bins of the histogram: a few values per bin for a 224 px image.
BINS = 4096


def order_statistics(values: np.ndarray, ranks: Sequence[int]) -> list[float]:
    """The ``ranks``-th smallest values (0-based) of a float32 array."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(1, -1)
    low, high = cv2.minMaxLoc(flat)[:2]
    if not high > low:
        return [float(low)] * len(ranks)
    # Monotone in the value, so every bin's values lie between those of its neighbours.
    index = cv2.addWeighted(flat, BINS / (high - low), flat, 0.0, -low * BINS / (high - low))
    index = index.astype(np.int32)
    np.maximum(index, 0, out=index)
    np.minimum(index, BINS - 1, out=index)
    counts = np.cumsum(np.bincount(index.ravel(), minlength=BINS))
    out = []
    for rank in ranks:
        where = int(np.searchsorted(counts, rank, side="right"))
        below = int(counts[where - 1]) if where else 0
        inside = flat[index == where]
        out.append(float(np.partition(inside, rank - below)[rank - below]))
    return out


def quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)``, linear interpolation between the neighbouring ranks."""
    position = q * (values.size - 1)
    low = int(position)
    high = min(low + 1, values.size - 1)
    below, above = order_statistics(values, (low, high))
    return float(np.float32(below) + (np.float32(above) - np.float32(below)) * (position - low))


def median(values: np.ndarray) -> float:
    """``np.median`` of a float32 array (the two middle values' float32 mean when even)."""
    n = values.size
    if n % 2:
        return order_statistics(values, (n // 2,))[0]
    below, above = order_statistics(values, (n // 2 - 1, n // 2))
    return float((np.float32(below) + np.float32(above)) / np.float32(2))
