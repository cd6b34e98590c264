"""A field's pixels and its small look are made once while the image lives, and never for a
photograph too large to hold twice."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PIL import Image

from app.core import imaging
from app.core.imaging import MEMO_MAX_PIXELS, bilinear, pixels


def field(size: tuple[int, int] = (224, 224), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(7)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, np.uint8), mode=mode)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_pixels_are_the_images_array(mode: str) -> None:
    image = field((97, 61), mode)
    made = pixels(image)
    assert made.dtype == np.uint8
    assert np.array_equal(made, np.asarray(image))


def test_pixels_are_made_once_and_cannot_be_changed() -> None:
    image = field()
    first = pixels(image)
    assert pixels(image) is first
    assert not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0, 0] = 1


def test_the_memo_goes_with_its_image() -> None:
    image = field()
    pixels(image)
    bilinear(image, (128, 128))
    ident = id(image)
    assert set(imaging._memos[ident]) == {"pixels", (128, 128)}
    del image
    gc.collect()
    assert ident not in imaging._memos


def test_a_large_photograph_is_never_held_twice() -> None:
    side = int(MEMO_MAX_PIXELS**0.5) + 1
    image = Image.new("RGB", (side, side), (200, 180, 190))
    first = pixels(image)
    assert pixels(image) is not first
    assert id(image) not in imaging._memos
    assert np.array_equal(first, np.asarray(image))
