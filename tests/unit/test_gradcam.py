"""Grad-CAM on untrained networks of every registered architecture, and its overlay PNG."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
from PIL import Image

from app.core.classes import CLASS_IDS
from app.core.explanation.gradcam import COLORMAP, GradCam, overlay_png, target_layer
from training.architectures import FIELD_ARCHITECTURES, architecture


@functools.cache
def untrained_gradcam(name: str) -> GradCam:
    return GradCam(architecture(name).build())


def test_target_layer_is_the_last_fine_enough_conv_block_before_flatten() -> None:
    # VGGNet's last block is 14x14 at 224 px input: too coarse, so its fourth (28x28).
    expected = {"lenet": "c3_relu", "sequential": "conv_relu", "vggnet": "block4_3_relu"}
    for name, activation in expected.items():
        assert target_layer(architecture(name).build()) == activation


@pytest.mark.parametrize("name", FIELD_ARCHITECTURES)
def test_heatmap_shape_and_range_untrained(name: str) -> None:
    # Untrained weights: the graph, shapes and normalisation, on a synthetic input.
    cam = untrained_gradcam(name)
    x = np.random.default_rng(0).random((cam.input_size, cam.input_size, 3), np.float32)
    for class_index in range(len(CLASS_IDS)):
        heat = cam.heatmap(x, class_index)
        assert heat.shape == (cam.input_size, cam.input_size)
        assert heat.dtype == np.float32
        assert np.isfinite(heat).all()
        assert heat.min() >= 0.0
        assert heat.max() <= 1.0
        assert heat.max() == 0.0 or heat.max() == pytest.approx(1.0)


def test_bad_arguments_are_refused() -> None:
    cam = untrained_gradcam("sequential")
    x = np.zeros((cam.input_size, cam.input_size, 3), np.float32)
    with pytest.raises(ValueError, match="class_index"):
        cam.heatmap(x, len(CLASS_IDS))
    with pytest.raises(ValueError, match="class_index"):
        cam.heatmap(x, -1)
    with pytest.raises(ValueError, match="shape"):
        cam.heatmap(np.zeros((cam.input_size + 1, cam.input_size, 3), np.float32), 0)


def test_overlay_png_blends_heat_at_display_size() -> None:
    photo = Image.new("RGB", (1000, 600), (200, 180, 190))
    heat = np.zeros((128, 128), np.float32)
    png = Image.open(io.BytesIO(overlay_png(photo, heat)))
    assert png.format == "PNG"
    assert png.size == (512, 307)
    # No heat: the photograph is shown unchanged.
    assert (np.asarray(png.convert("RGB")) == (200, 180, 190)).all()

    heat[:64, :64] = 1.0  # hot upper-left quarter
    pixels = np.asarray(Image.open(io.BytesIO(overlay_png(photo, heat))).convert("RGB"), float)
    hot_colour = 0.4 * np.array([200, 180, 190]) + 0.6 * COLORMAP[255]
    np.testing.assert_allclose(pixels[50, 50], hot_colour, atol=1.5)
    assert (pixels[250, 400] == (200, 180, 190)).all()

    small = Image.new("RGB", (31, 17), (0, 0, 0))
    assert Image.open(io.BytesIO(overlay_png(small, heat))).size == (31, 17)
    with pytest.raises(ValueError, match="heatmap must be 2-D"):
        overlay_png(photo, np.zeros((4, 4, 3), np.float32))
