"""Small image helpers shared by the preprocessing, the scale check and the explanation pictures."""

from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar, cast

import cv2
import numpy as np
from PIL import Image

T = TypeVar("T")

# Long side of the explanation pictures (Grad-CAM overlay, cell outlines).
DISPLAY_SIDE = 512
# Shrunk by at most this, bilinear is as faithful as area averaging (224 px to a 192 px
# thumbnail) at a fifth of its time; beyond, it drops pixels.
LINEAR_SHRINK = 1.25
# Each 8-bit value as float32 in [0, 1], divided exactly as ``float32(v) / 255`` divides it.
_UNIT = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(1, 256)


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """RGB copy with the long side at most ``max_side`` (bilinear, aspect kept)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    factor = int(1 / scale)
    if factor >= 2:
        # Box-reduce first: resizing a 12-megapixel photograph directly is slow.
        return image.reduce(factor).resize(size, Image.Resampling.BILINEAR)
    return bilinear(image, size)


def unit_floats(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels as float32 in [0, 1], the very values ``pixels / 255`` gives: one table
    lookup, one array made (division needs a float copy first)."""
    u8 = np.ascontiguousarray(pixels, dtype=np.uint8)
    if u8.size == 0:
        return np.zeros(u8.shape, np.float32)
    # One column: any shape (a stack of crops too) is one run of values to OpenCV.
    return np.asarray(cv2.LUT(u8.reshape(-1, 1), _UNIT)).reshape(u8.shape)


# Pictures up to this many pixels (a 500 px square) keep their made arrays and resizes while
# they live, for a field's steps to share; a large photograph's copy would cost its size again.
MEMO_MAX_PIXELS = 250_000

_lock = threading.Lock()
_memos: dict[int, dict[object, object]] = {}


def _memo(image: Image.Image, key: object, make: Callable[[], T]) -> T:
    """``make()``, made once per image and key while the image lives (small images only);
    for images nobody changes once decoded."""
    if image.width * image.height > MEMO_MAX_PIXELS:
        return make()
    ident = id(image)
    with _lock:
        made = _memos.get(ident, {}).get(key)
    if made is not None:
        return cast(T, made)
    made = make()
    with _lock:
        if ident not in _memos:
            _memos[ident] = {}
            weakref.finalize(image, _memos.pop, ident, None)
        _memos[ident][key] = made
    return made


def bilinear(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image.resize(size, BILINEAR)``, made once per image and size while the image lives:
    the scale check and the gallery's segmentation both look at a field at 128 px."""
    return _memo(image, size, lambda: image.resize(size, Image.Resampling.BILINEAR))


def pixels(image: Image.Image) -> np.ndarray:
    """``np.asarray(image)``, read-only, made once per image while it lives: the guard's
    statistics, the thumbnail and the cell crops all read a field's pixels (Pillow's own
    array export copies them each time, a third slower than its byte string)."""
    return _memo(image, "pixels", lambda: _array(image))


def _array(image: Image.Image) -> np.ndarray:
    if image.mode not in ("RGB", "L"):
        return np.asarray(image)
    bands = len(image.getbands())
    flat = np.frombuffer(image.tobytes(), np.uint8)
    return flat.reshape((image.height, image.width, bands) if bands > 1 else image.size[::-1])


def jpeg_bytes(image: Image.Image, quality: int = 88) -> bytes:
    """The image as a JPEG file (thumbnails, crops and viewers of photographs)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_of(rgb: np.ndarray, quality: int = 88, full_colour: bool = False) -> bytes:
    """An 8-bit RGB array as a JPEG file (OpenCV's encoder: the pictures made per field);
    ``full_colour`` keeps the colour at every pixel (4:4:4), not every other (4:2:0)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if full_colour:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cannot encode a {rgb.shape} array as JPEG")
    return data.tobytes()


def resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An 8-bit RGB array at ``size`` (width, height): bilinear when shrunk by at most
    LINEAR_SHRINK, averaged when shrunk more, bicubic when enlarged."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    shrink = max(rgb.shape[1] / size[0], rgb.shape[0] / size[1])
    if shrink <= 1:
        interpolation = cv2.INTER_CUBIC
    elif shrink <= LINEAR_SHRINK:
        interpolation = cv2.INTER_LINEAR
    else:
        interpolation = cv2.INTER_AREA
    return cv2.resize(rgb, size, interpolation=interpolation)


def png_bytes(image: Image.Image) -> bytes:
    """The image as a PNG file (fast compression: these are made per request)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
