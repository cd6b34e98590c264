"""Training augmentation: background swapping and the leukocyte masks it relies on."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training.augment import AUGMENTATION, augment_image, swap_backgrounds
from training.dataset import cell_masks, make_dataset


def _smear(
    size: int = 64,
    cell_at: tuple[int, int] = (20, 20),
    background: tuple[float, float, float] = (0.95, 0.92, 0.96),
) -> np.ndarray:
    x = np.full((size, size, 3), background, np.float32)
    cy, cx = cell_at
    yy, xx = np.mgrid[:size, :size]
    x[(yy - cy) ** 2 + (xx - cx) ** 2 <= 49] = (0.45, 0.25, 0.75)  # violet leukocyte
    return x


def test_cell_masks_cover_the_leukocyte_and_not_the_background() -> None:
    x = np.stack([_smear(), _smear(cell_at=(44, 40))])
    m = cell_masks(x)
    assert m.shape == (2, 64, 64, 1)
    assert m.dtype == np.float32
    assert m.min() >= 0.0
    assert m.max() <= 1.0
    assert m[0, 20, 20, 0] == 1.0
    assert m[1, 44, 40, 0] == 1.0
    assert m[0, 55, 55, 0] == 0.0
    assert m[1, 5, 5, 0] == 0.0
    # Dilated beyond the cell's edge (radius 7): the rim goes with the cell.
    assert m[0, 20, 28, 0] > 0.5


def test_swap_keeps_both_images_cells_and_takes_the_partners_background() -> None:
    a = _smear(cell_at=(20, 20), background=(0.95, 0.92, 0.96))
    b = _smear(cell_at=(44, 44), background=(0.98, 0.95, 0.80))
    x = np.stack([a, b])
    m = cell_masks(x)
    out = swap_backgrounds(tf.constant(x), tf.constant(m), 1.0).numpy()
    # Image 0's partner is image 1 (roll by one), and the other way round.
    np.testing.assert_allclose(out[0, 20, 20], a[20, 20])  # its own cell
    np.testing.assert_allclose(out[0, 5, 60], b[5, 60])  # background from b
    np.testing.assert_allclose(out[0, 44, 44], a[44, 44])  # b's cell is not pasted in
    np.testing.assert_allclose(out[1, 44, 44], b[44, 44])
    np.testing.assert_allclose(out[1, 60, 5], a[60, 5])


def test_no_swap_at_probability_zero() -> None:
    x = np.stack([_smear(), _smear(background=(0.9, 0.9, 0.7))])
    out = swap_backgrounds(tf.constant(x), tf.constant(cell_masks(x)), 0.0).numpy()
    np.testing.assert_array_equal(out, x)


def test_training_dataset_with_swapping_yields_augmented_batches() -> None:
    from dataclasses import replace

    x = np.stack([_smear(cell_at=(10 + 5 * i, 30)) for i in range(6)])
    y = np.array([0, 1, 2, 3, 0, 1])
    profile = replace(AUGMENTATION, background_swap_p=0.5)
    batches = list(make_dataset(x, y, 4, True, seed=0, profile=profile))
    assert [b[0].shape[0] for b in batches] == [4, 2]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.shape == x.shape
    assert 0.0 <= images.min()
    assert images.max() <= 1.0
    assert sorted(labels.argmax(1).tolist()) == sorted(y.tolist())


def test_augment_image_keeps_shape_and_range() -> None:
    out = augment_image(tf.constant(_smear())).numpy()
    assert out.shape == (64, 64, 3)
    assert 0.0 <= out.min()
    assert out.max() <= 1.0


def _disc(size: int = 64) -> np.ndarray:
    x = np.full((size, size, 3), 0.9, np.float32)
    yy, xx = np.mgrid[:size, :size]
    x[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= 100] = (0.4, 0.2, 0.6)
    return x


def test_blur_keeps_the_mean_and_softens_edges() -> None:
    from training.augment import gaussian_blur

    x = _disc()
    out = gaussian_blur(tf.constant(x), tf.constant(1.5)).numpy()
    assert out.shape == x.shape
    assert out.mean() == pytest.approx(x.mean(), abs=1e-3)
    assert np.abs(np.diff(out, axis=1)).max() < 0.6 * np.abs(np.diff(x, axis=1)).max()


def test_zoom_out_shrinks_the_cells_and_keeps_the_size() -> None:
    from training.augment import zoom_out

    x = _disc()
    out = zoom_out(tf.constant(x), tf.constant(0.75)).numpy()
    assert out.shape == x.shape
    dark = lambda a: (a.mean(axis=2) < 0.6).sum()  # noqa: E731
    # One shrunk disc in the middle; mirrored margins add no part of it (it is far from the edge).
    assert dark(out) == pytest.approx(0.75**2 * dark(x), rel=0.15)


def test_vignette_darkens_the_corners_only() -> None:
    from training.augment import vignette

    x = np.full((64, 64, 3), 0.8, np.float32)
    out = vignette(tf.constant(x), tf.constant(0.4)).numpy()
    assert out[32, 32, 0] == pytest.approx(0.8, abs=0.01)
    assert out[0, 0, 0] == pytest.approx(0.8 * 0.6, abs=0.01)


def test_no_capture_conditions_at_probability_zero() -> None:
    from dataclasses import replace

    from training.augment import capture_conditions

    x = tf.constant(_disc())
    profile = replace(AUGMENTATION, capture_p=0.0)
    np.testing.assert_allclose(capture_conditions(x, profile).numpy(), x.numpy())
    assert {"jpeg_quality", "max_blur_sigma", "min_zoom_out", "temperature"} <= set(
        AUGMENTATION.describe()
    )
