"""Test-time orientations: the eight flips and quarter turns, their inverse, and averaging."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from app.core.orientations import (
    ORIENTATIONS,
    all_orientations,
    averaged_over_views,
    check_views,
    mean_over_views,
    undo_orientations,
)

SIZE = 150


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


def _orientations(image: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(image, k) for k in range(4)] + [np.rot90(image[:, ::-1], k) for k in range(4)]


def test_views_are_the_eight_distinct_orientations_in_order() -> None:
    x = _images(2)
    views = all_orientations(tf.constant(x)).numpy()
    assert views.shape == (16, SIZE, SIZE, 3)
    for b in range(2):
        for v in range(ORIENTATIONS):
            expected = np.rot90(x[b], v // 2)
            expected = expected[:, ::-1] if v % 2 else expected
            np.testing.assert_array_equal(views[v * 2 + b], expected)
    flat = views[::2].reshape(ORIENTATIONS, -1)
    assert len({row.tobytes() for row in flat}) == ORIENTATIONS


def test_undo_returns_every_view_to_the_original_frame() -> None:
    x = _images(3, seed=1)
    back = undo_orientations(all_orientations(tf.constant(x))).numpy()
    np.testing.assert_array_equal(back, np.tile(x, (ORIENTATIONS, 1, 1, 1)))


def test_mean_over_views_groups_each_images_views() -> None:
    t = tf.constant(np.arange(8 * 3 * 2, dtype=np.float32).reshape(8 * 3, 2))
    mean = mean_over_views(t, ORIENTATIONS).numpy()
    expected = np.arange(48, dtype=np.float32).reshape(8, 3, 2).mean(axis=0)
    np.testing.assert_allclose(mean, expected)
    assert mean_over_views(t, 1) is t


def test_only_supported_view_counts() -> None:
    assert check_views(1) == 1
    assert check_views(ORIENTATIONS) == ORIENTATIONS
    with pytest.raises(ValueError, match="views"):
        check_views(4)
    with pytest.raises(ValueError, match="views"):
        averaged_over_views(lambda x: x, 2)


def test_averaged_function_is_invariant_and_keeps_tuples() -> None:
    def fn(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Depends on orientation: the top-left pixel and the first row's mean.
        return x[:, 0, 0, :], tf.reduce_mean(x[:, 0], axis=1)

    averaged = averaged_over_views(fn, ORIENTATIONS)
    x = _images(1, seed=2)[0]
    outs = [averaged(tf.constant(o[None].copy())) for o in _orientations(x)]
    assert isinstance(outs[0], tuple)
    assert outs[0][0].shape == (1, 3)
    for out in outs[1:]:
        for a, b in zip(out, outs[0], strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    single = fn(tf.constant(x[None]))[0].numpy()
    rotated = fn(tf.constant(np.rot90(x)[None].copy()))[0].numpy()
    assert not np.allclose(single, rotated)  # so the invariance above is the averaging's
