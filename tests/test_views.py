"""Test-time views: the eight orientations, their inverse, and that a model, its OOD
features and its Grad-CAM map become invariant (or equivariant) to flips and turns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.classes import CLASS_IDS
from app.explain import GradCam
from app.model_store import load_model
from app.ood import build_forward
from app.views import (
    DIHEDRAL,
    check_views,
    dihedral_views,
    mean_over_views,
    over_views,
    undo_dihedral_views,
)
from training.architectures import build

SIZE = 150


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


def _orientations(image: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(image, k) for k in range(4)] + [np.rot90(image[:, ::-1], k)
                                                     for k in range(4)]


def test_views_are_the_eight_distinct_orientations_in_order() -> None:
    x = _images(2)
    views = dihedral_views(tf.constant(x)).numpy()
    assert views.shape == (16, SIZE, SIZE, 3)
    for b in range(2):
        for v in range(DIHEDRAL):
            expected = np.rot90(x[b], v // 2)
            expected = expected[:, ::-1] if v % 2 else expected
            np.testing.assert_array_equal(views[v * 2 + b], expected)
    flat = views[::2].reshape(DIHEDRAL, -1)
    assert len({row.tobytes() for row in flat}) == DIHEDRAL


def test_undo_returns_every_view_to_the_original_frame() -> None:
    x = _images(3, seed=1)
    back = undo_dihedral_views(dihedral_views(tf.constant(x))).numpy()
    np.testing.assert_array_equal(back, np.tile(x, (DIHEDRAL, 1, 1, 1)))


def test_mean_over_views_groups_each_images_views() -> None:
    t = tf.constant(np.arange(8 * 3 * 2, dtype=np.float32).reshape(8 * 3, 2))
    mean = mean_over_views(t, DIHEDRAL).numpy()
    expected = np.arange(48, dtype=np.float32).reshape(8, 3, 2).mean(axis=0)
    np.testing.assert_allclose(mean, expected)
    assert mean_over_views(t, 1) is t


def test_only_supported_view_counts() -> None:
    assert check_views(1) == 1 and check_views(DIHEDRAL) == DIHEDRAL
    with pytest.raises(ValueError, match="views"):
        check_views(4)
    with pytest.raises(ValueError, match="views"):
        over_views(lambda x: x, 2)


def test_averaged_function_is_invariant_and_keeps_tuples() -> None:
    def fn(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # Depends on orientation: the top-left pixel and the first row's mean.
        return x[:, 0, 0, :], tf.reduce_mean(x[:, 0], axis=1)

    averaged = over_views(fn, DIHEDRAL)
    x = _images(1, seed=2)[0]
    outs = [averaged(tf.constant(o[None].copy())) for o in _orientations(x)]
    assert isinstance(outs[0], tuple) and outs[0][0].shape == (1, 3)
    for out in outs[1:]:
        for a, b in zip(out, outs[0], strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    single = fn(tf.constant(x[None]))[0].numpy()
    rotated = fn(tf.constant(np.rot90(x)[None].copy()))[0].numpy()
    assert not np.allclose(single, rotated)  # so the invariance above is the averaging's


@pytest.fixture(scope="module")
def viewed_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LeNet saved with metadata asking for the eight views."""
    root = tmp_path_factory.mktemp("views-model")
    build("lenet").save(root / "lenet.keras")
    meta = {"name": "lenet", "input_size": SIZE, "class_ids": list(CLASS_IDS),
            "version": "test", "inference": {"views": DIHEDRAL}}
    (root / "lenet.json").write_text(json.dumps(meta))
    return root


def test_model_with_views_scores_every_orientation_alike(viewed_model_dir: Path) -> None:
    loaded = load_model(viewed_model_dir, "lenet")
    assert loaded.views == DIHEDRAL
    x = _images(1, seed=4)[0]
    one_view = [loaded.logits_model({"image": o[None].copy()}, training=False).numpy()
                for o in _orientations(x)]
    assert not np.allclose(one_view[0], one_view[1], atol=1e-4)  # the network alone is not
    logits = np.concatenate([loaded.logits(o.copy()) for o in _orientations(x)])
    np.testing.assert_allclose(logits, np.repeat(logits[:1], DIHEDRAL, axis=0),
                               rtol=1e-4, atol=1e-4)
    # A batch gives the same as one image at a time.
    batch = np.stack([o.copy() for o in _orientations(x)[:3]])
    np.testing.assert_allclose(loaded.logits(batch), logits[:3], rtol=1e-4, atol=1e-4)
    # The guard's forward pass returns the same logits and invariant features.
    forward = build_forward(loaded.keras_model, SIZE, loaded.views)
    features, guard_logits = (t.numpy() for t in forward(tf.constant(batch)))
    np.testing.assert_allclose(guard_logits, logits[:3], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features, np.repeat(features[:1], 3, axis=0),
                               rtol=1e-4, atol=1e-4)


def test_gradcam_of_a_model_with_views_turns_with_the_image(viewed_model_dir: Path) -> None:
    loaded = load_model(viewed_model_dir, "lenet")
    cam = GradCam(loaded)
    assert cam.views == DIHEDRAL
    x = _images(1, seed=5)[0]
    heat, index, logits = cam.heatmap_top(x)
    np.testing.assert_allclose(logits, loaded.logits(x)[0], rtol=1e-4, atol=1e-4)
    turned_heat, turned_index, _ = cam.heatmap_top(np.rot90(x).copy())
    assert turned_index == index
    np.testing.assert_allclose(turned_heat, np.rot90(heat), atol=1e-4)
    flipped_heat = cam.heatmap(x[:, ::-1].copy(), index)
    np.testing.assert_allclose(flipped_heat, heat[:, ::-1], atol=1e-4)
