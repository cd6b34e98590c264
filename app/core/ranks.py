"""Exact quantiles and medians of an image's pixels, faster than a partial sort of them all.

A strided sample of the values brackets the wanted ranks; only the values inside the bracket
are then partially sorted (all of them when the bracket misses, which the counts reveal). The
results are the very values ``np.partition``, ``np.quantile`` and ``np.median`` give
(``tests/unit/test_ranks.py``), ties and all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Every this many values make the sample (about 3,000 of a 224 px image).
SAMPLE_STEP = 16
# Fewer values than this are partitioned whole: a sample would save nothing.
MIN_SAMPLED = 4 * SAMPLE_STEP * SAMPLE_STEP


def order_statistics(values: np.ndarray, ranks: Sequence[int]) -> list[float]:
    """The ``ranks``-th smallest values (0-based) of a float32 array."""
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    n = flat.size
    wanted = [int(r) for r in ranks]
    if n < MIN_SAMPLED:
        part = np.partition(flat, wanted)
        return [float(part[k]) for k in wanted]
    sample = flat[::SAMPLE_STEP]
    m = sample.size
    # Four standard errors of a sample's rank each side (its spread is under sqrt(m) / 2).
    spread = 2 * int(np.sqrt(m)) + 2
    first = max(0, min(wanted) * m // n - spread)
    last = min(m - 1, max(wanted) * m // n + spread)
    bounds = np.partition(sample, (first, last))
    low, high = bounds[first], bounds[last]
    below = int(np.count_nonzero(flat < low))
    inside = flat[(flat >= low) & (flat <= high)]
    kth = [k - below for k in wanted]
    if min(kth) < 0 or max(kth) >= inside.size:
        inside, kth = flat, wanted
    part = np.partition(inside, kth)
    return [float(part[k]) for k in kth]


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
