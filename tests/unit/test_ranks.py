"""Exact order statistics from one partition give NumPy's own values, ties and all."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.ranks import median, order_statistics, quantile


def samples() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.random((224, 224), dtype=np.float32),
        (rng.integers(0, 256, (150, 151)) / 255).astype(np.float32),  # many ties
        rng.normal(0.5, 0.01, 12_345).astype(np.float32) ** 3,  # crowded into few bins
        np.full((7, 9), 0.25, np.float32),
        np.array([0.3], np.float32),
        np.array([1.0, 0.0], np.float32),
        # Mostly ties: the neighbouring rank is a tie of the partitioned one.
        np.where(np.arange(20_000) % 16, np.float32(1), np.float32(0)).astype(np.float32),
        np.linspace(1, 0, 50_000, dtype=np.float32).reshape(250, 200),
    ]


@pytest.mark.parametrize("values", samples())
def test_order_statistics_are_numpys(values: np.ndarray) -> None:
    n = values.size
    ranks = sorted({0, n // 10, n // 2, max(0, n - 2), n - 1})
    assert order_statistics(values, ranks) == [
        float(np.partition(values.ravel(), k)[k]) for k in ranks
    ]


@pytest.mark.parametrize("values", samples())
def test_neighbouring_ranks_are_numpys_at_either_end(values: np.ndarray) -> None:
    n = values.size
    for k in sorted({0, n // 10, n // 2 - 1, n // 2, n - 2, n - 1} & set(range(n))):
        for ranks in ((k, min(k + 1, n - 1)), (min(k + 1, n - 1), k), (k, k)):
            assert order_statistics(values, ranks) == [
                float(np.partition(values.ravel(), r)[r]) for r in ranks
            ]


@pytest.mark.parametrize("values", samples())
@pytest.mark.parametrize("q", [0.0, 0.1, 0.75, 1.0])
def test_quantile_is_numpys(values: np.ndarray, q: float) -> None:
    flat = values.ravel()
    position = q * (flat.size - 1)
    low, high = int(position), min(int(position) + 1, flat.size - 1)
    part = np.partition(flat, (low, high))
    expected = part[low] + (part[high] - part[low]) * (position - low)
    assert quantile(values, q) == float(expected)
    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-6)


@pytest.mark.parametrize("values", samples())
def test_median_is_numpys(values: np.ndarray) -> None:
    assert median(values) == float(np.median(values))
