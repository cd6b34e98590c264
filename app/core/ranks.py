"""Exact quantiles and medians of an image's pixels: one partition, not NumPy's two.

A quantile or an even median needs two neighbouring ranks. NumPy partitions at both, which
costs three to four times one partition on a photograph's values; here the array is
partitioned once, at the rank nearer its end, and the other rank is the largest (or
smallest) of the values on the near side of it. The results are the very values
``np.partition``, ``np.quantile`` and ``np.median`` give (``tests/unit/test_ranks.py``),
ties and all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def order_statistics(values: np.ndarray, ranks: Sequence[int]) -> list[float]:
    """The ``ranks``-th smallest values (0-based) of a float32 array."""
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    wanted = [int(r) for r in ranks]
    low, high = min(wanted), max(wanted)
    if high - low > 1:
        part = np.partition(flat, wanted)
        return [float(part[k]) for k in wanted]
    if high < flat.size - high:
        # Partitioned at ``high``: the values before it are the ``high`` smallest.
        part = np.partition(flat, high)
        found = {high: part[high], low: part[:high].max() if low < high else part[high]}
    else:
        # Partitioned at ``low``: the values after it are the largest.
        part = np.partition(flat, low)
        found = {low: part[low], high: part[low + 1 :].min() if high > low else part[low]}
    return [float(found[k]) for k in wanted]


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
