"""The guard's texture profile reads magnification, not a camera's grain or focus: fine
noise and a slight blur move the served offsets far less than the 1 px texture they left."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core.guards.image_stats import TEXTURE_OFFSETS, field_statistics
from tests.support.images import ImageFactory

PROFILE = (1, *TEXTURE_OFFSETS)


def _noise(x: np.ndarray) -> np.ndarray:
    return x + np.random.default_rng(0).normal(0, 8, x.shape)


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.blur(x, (3, 3))


@pytest.mark.parametrize("capture", [_noise, _blur], ids=["sensor grain", "slight blur"])
def test_grain_and_focus_barely_move_the_served_texture(
    capture: Callable[[np.ndarray], np.ndarray],
) -> None:
    assert min(TEXTURE_OFFSETS) >= 4
    field = ImageFactory.cell_field([(0.4, 0.4, 1.7), (0.7, 0.6, 1.2)], seed=3)
    x = np.asarray(field, np.float32)
    captured = Image.fromarray(np.clip(capture(x), 0, 255).astype(np.uint8))
    n = len(PROFILE)
    moved = np.abs(field_statistics(captured, PROFILE)[-n:] - field_statistics(field, PROFILE)[-n:])
    finest, served = moved[0], moved[1:]
    assert finest > 0.2
    assert np.all(served < finest / 2), f"1 px moved {finest:.3f}, served {served.round(3)}"


def test_the_served_statistics_are_the_profile_without_the_finest_offsets() -> None:
    field = ImageFactory.cell_field([(0.5, 0.5, 1.5)], seed=1)
    served = field_statistics(field)
    full = field_statistics(field, PROFILE)
    assert len(full) == len(served) + 1
    np.testing.assert_array_equal(np.delete(full, -len(PROFILE)), served)
