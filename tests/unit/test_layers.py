"""StainNormalization: what it removes, what it keeps, and that models carrying it load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from app.core.layers import StainNormalization
from training.perturbations import stain_shift


def _smear_like(seed: int = 0, size: int = 32) -> np.ndarray:
    """Pale background with violet blobs: colour varies, and not only in brightness."""
    rng = np.random.default_rng(seed)
    x = np.full((size, size, 3), (0.93, 0.90, 0.95), np.float32)
    for _ in range(6):
        cy, cx = rng.integers(4, size - 4, 2)
        x[cy - 3 : cy + 3, cx - 3 : cx + 3] = (0.55, 0.35, 0.80)
    return np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)


def _norm(x: np.ndarray) -> np.ndarray:
    return np.asarray(StainNormalization()(x[None]))[0]


def test_per_channel_gain_brightness_and_contrast_are_removed() -> None:
    x = _smear_like()
    tinted = x * np.array([1.08, 0.95, 0.85], np.float32)
    np.testing.assert_allclose(_norm(tinted), _norm(x), atol=2e-3)


@pytest.mark.parametrize("factor", [0.6, 0.8, 1.3])
def test_paler_or_stronger_staining_is_almost_removed(factor: float) -> None:
    # Exact for chroma alone; the grey-world step before it leaves a small residue.
    x = _smear_like()
    grey = x.mean(axis=2, keepdims=True)
    restained = grey + factor * (x - grey)
    moved = np.linalg.norm(_norm(restained) - _norm(x)) / np.linalg.norm(_norm(x))
    assert moved < 0.08


def test_fixed_stain_shift_moves_the_input_much_less_than_layer_norm() -> None:
    x = _smear_like()
    shifted = stain_shift(x)
    ours = np.linalg.norm(_norm(shifted) - _norm(x)) / np.linalg.norm(_norm(x))

    def per_channel(a: np.ndarray) -> np.ndarray:
        return (a - a.mean(axis=(0, 1))) / np.sqrt(a.var(axis=(0, 1)) + 1e-3)

    theirs = np.linalg.norm(per_channel(shifted) - per_channel(x)) / np.linalg.norm(per_channel(x))
    assert ours < 0.5 * theirs


def test_shapes_and_colour_differences_are_kept() -> None:
    x = _smear_like()
    out = _norm(x)
    assert out.shape == x.shape
    assert np.isfinite(out).all()
    # Violet blobs still differ from the background, and the channels still differ.
    assert out.std() > 0.5
    assert np.abs(out - out.mean(axis=2, keepdims=True)).mean() > 0.1
    # Two different images stay different.
    assert np.linalg.norm(_norm(_smear_like(1)) - out) > 0.3 * np.linalg.norm(out)


@pytest.mark.parametrize("fill", [0.0, 0.5, 1.0])
def test_flat_images_give_finite_output(fill: float) -> None:
    out = _norm(np.full((16, 16, 3), fill, np.float32))
    assert np.isfinite(out).all()


def test_saved_model_with_the_layer_loads(tmp_path) -> None:
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            StainNormalization(epsilon=2e-3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert isinstance(loaded.layers[0], StainNormalization)
    assert loaded.layers[0].epsilon == 2e-3
    x = _smear_like(size=16)[None]
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
