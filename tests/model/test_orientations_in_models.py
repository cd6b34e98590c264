"""A model that averages test-time views: its logits, its OOD features and its Grad-CAM
map are invariant (or turn with the image) under flips and quarter turns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.core.classes import CLASS_IDS
from app.core.explanation.gradcam import GradCam
from app.core.guards.ood import build_forward
from app.core.model_store import load_model
from app.core.orientations import ORIENTATIONS
from training.architectures import architecture

SIZE = 150


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


def _orientations(image: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(image, k) for k in range(4)] + [np.rot90(image[:, ::-1], k) for k in range(4)]


@pytest.fixture(scope="module")
def viewed_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LeNet saved with metadata asking for the eight views."""
    root = tmp_path_factory.mktemp("views-model")
    architecture("lenet").build().save(root / "lenet.keras")
    meta = {
        "name": "lenet",
        "input_size": SIZE,
        "class_ids": list(CLASS_IDS),
        "version": "test",
        "inference": {"views": ORIENTATIONS},
    }
    (root / "lenet.json").write_text(json.dumps(meta))
    return root


def test_model_with_views_scores_every_orientation_alike(viewed_model_dir: Path) -> None:
    loaded = load_model(viewed_model_dir, "lenet")
    assert loaded.views == ORIENTATIONS
    x = _images(1, seed=4)[0]
    one_view = [
        loaded.logits_model({"image": o[None].copy()}, training=False).numpy()
        for o in _orientations(x)
    ]
    assert not np.allclose(one_view[0], one_view[1], atol=1e-4)  # the network alone is not
    logits = np.concatenate([loaded.logits(o.copy()) for o in _orientations(x)])
    np.testing.assert_allclose(
        logits, np.repeat(logits[:1], ORIENTATIONS, axis=0), rtol=1e-4, atol=1e-4
    )
    # A batch gives the same as one image at a time.
    batch = np.stack([o.copy() for o in _orientations(x)[:3]])
    np.testing.assert_allclose(loaded.logits(batch), logits[:3], rtol=1e-4, atol=1e-4)
    # The guard's forward pass returns the same logits and invariant features.
    forward = build_forward(loaded.keras_model, SIZE, loaded.views)
    features, guard_logits = (t.numpy() for t in forward(tf.constant(batch)))
    np.testing.assert_allclose(guard_logits, logits[:3], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features, np.repeat(features[:1], 3, axis=0), rtol=1e-4, atol=1e-4)


def test_gradcam_of_a_model_with_views_turns_with_the_image(viewed_model_dir: Path) -> None:
    loaded = load_model(viewed_model_dir, "lenet")
    cam = GradCam(loaded)
    assert cam.views == ORIENTATIONS
    x = _images(1, seed=5)[0]
    heat, index, logits = cam.heatmap_top(x)
    np.testing.assert_allclose(logits, loaded.logits(x)[0], rtol=1e-4, atol=1e-4)
    turned_heat, turned_index, _ = cam.heatmap_top(np.rot90(x).copy())
    assert turned_index == index
    np.testing.assert_allclose(turned_heat, np.rot90(heat), atol=1e-4)
    flipped_heat = cam.heatmap(x[:, ::-1].copy(), index)
    np.testing.assert_allclose(flipped_heat, heat[:, ::-1], atol=1e-4)
