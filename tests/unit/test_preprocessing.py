"""The shared preprocessing on odd inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.core.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from app.core.preprocessing import (
    decoding_cost,
    load_image,
    preprocess,
    sniff_format,
    to_model_input,
    to_rgb,
)
from tests.support.images import ImageFactory


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None].repeat(w, 1)
    return np.stack([x, y, 255 - x], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.fromarray(_gradient()).convert("L"), "PNG"),
        (Image.fromarray(_gradient()).convert("RGBA"), "PNG"),
        (Image.fromarray(_gradient()).convert("LA"), "PNG"),
        (Image.fromarray(_gradient()).convert("P"), "PNG"),
        (Image.fromarray(_gradient()).convert("1"), "PNG"),
        (Image.fromarray(_gradient()).convert("CMYK"), "JPEG"),
        (Image.fromarray(_gradient()), "BMP"),
        (Image.fromarray(_gradient()), "TIFF"),
        (Image.fromarray(_gradient()), "WEBP"),
    ],
    ids=["grey", "rgba", "la", "palette", "1bit", "cmyk", "bmp", "tiff", "webp"],
)
def test_any_mode_becomes_rgb_model_input(image: Image.Image, fmt: str) -> None:
    x = preprocess(_encode(image, fmt), 150)
    assert x.shape == (150, 150, 3)
    assert x.dtype == np.float32
    assert 0.0 <= x.min() <= x.max() <= 1.0


def test_16_bit_grey_uses_full_range() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = load_image(_encode(Image.fromarray(ramp), "PNG"))
    arr = np.asarray(image)
    assert image.mode == "RGB"
    assert arr.min() == 0  # scaled, not clipped to white
    assert arr.max() == 255


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    image = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert np.asarray(image).min() == 255


def test_exif_orientation_is_applied() -> None:
    raw = Image.fromarray(_gradient(80, 40))  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = load_image(_encode(raw, "JPEG", exif=exif.tobytes()))
    assert image.size == (40, 80)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    arr = np.asarray(load_image(buf.getvalue()))
    assert arr[..., 0].mean() > 200
    assert arr[..., 2].mean() < 50


def test_resize_is_deterministic_and_exact_size() -> None:
    image = Image.fromarray(_gradient(300, 200))
    a, b = to_model_input(image, 128), to_model_input(image, 128)
    assert a.shape == (128, 128, 3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello, not an image", b"\xff\xd8\xff\xe0" + b"\0" * 20],
    ids=["empty", "text", "jpeg-header-only"],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        load_image(payload)


def test_truncated_jpeg_is_a_decode_error() -> None:
    data = _encode(Image.fromarray(_gradient(256, 256)), "JPEG")
    with pytest.raises(ImageDecodeError):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # A valid PNG header that declares 50000 x 50000 pixels.
    small = _encode(Image.new("L", (1, 1)), "PNG")
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = (
        small[:8]
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + small[33:]
    )
    with pytest.raises(ImageTooLargeError):
        load_image(bomb)


def test_path_and_bytes_give_the_same_array(tmp_path) -> None:
    data = _encode(Image.fromarray(_gradient()), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert np.array_equal(preprocess(path, 64), preprocess(data, 64))


def test_format_sniffing_ignores_names_and_refuses_others() -> None:
    images = ImageFactory()
    assert sniff_format(images.make("JPEG")) == "JPEG"
    assert sniff_format(images.make("PNG")) == "PNG"
    assert sniff_format(images.make("WEBP")) == "WEBP"
    with pytest.raises(UnsupportedImageError):
        sniff_format(b"%PDF-1.7 not an image")
    with pytest.raises(UnsupportedImageError):  # Pillow reads ICO, but it is not accepted
        sniff_format(images.make("ICO", size=(32, 32)))
    with pytest.raises(ImageDecodeError, match="empty"):
        sniff_format(b"")
    with pytest.raises(ImageDecodeError, match="damaged"):
        sniff_format(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)


def test_heic_from_a_phone_is_read_and_a_cut_one_is_called_damaged(images) -> None:
    from app.core.errors import ImageDecodeError
    from app.core.formats import claimed_format

    heic = images.make("HEIF", size=(64, 48))
    assert sniff_format(heic) == "HEIF"
    assert load_image(heic).size == (64, 48)
    assert claimed_format(heic) == "HEIF"
    with pytest.raises(ImageDecodeError, match="starts like a HEIF image but is damaged"):
        sniff_format(heic[:40])


def test_a_big_jpeg_is_decoded_smaller_and_keeps_its_own_size() -> None:
    import io

    from PIL import Image

    from app.core.preprocessing import DRAFT_MIN_SIDE, load_image, photograph_size

    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (200, 120, 160)).save(buf, "JPEG")
    image = load_image(buf.getvalue())
    assert min(image.size) >= DRAFT_MIN_SIDE
    assert image.size == (3000, 2000)
    assert photograph_size(image) == (6000, 4000)
    small = io.BytesIO()
    Image.new("RGB", (224, 224)).save(small, "JPEG")
    assert photograph_size(load_image(small.getvalue())) == (224, 224)


def test_16_bit_grey_is_scaled_by_its_range_without_a_float_copy() -> None:
    import numpy as np
    from PIL import Image

    from app.core.preprocessing import to_rgb

    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(values)))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_a_webp_costs_twice_to_decode_and_is_refused_over_12_megapixels() -> None:
    from app.core.preprocessing import DECODE_BUDGET

    over = _encode(Image.new("RGB", (4001, 3000)), "WEBP")
    with pytest.raises(ImageTooLargeError) as refused:
        load_image(over)
    assert "the limit for WebP images is 12,000,000 pixels" in refused.value.message
    assert load_image(_encode(Image.new("RGB", (4000, 3000)), "WEBP")).size == (4000, 3000)
    assert decoding_cost(_encode(Image.new("RGB", (4000, 3000)), "WEBP")) == DECODE_BUDGET


def test_the_decoding_cost_is_read_from_the_header_and_leaves_a_stream_at_its_start() -> None:
    from app.core.preprocessing import DECODE_BUDGET, PEAK_BYTES_PER_PIXEL

    png = io.BytesIO(_encode(Image.new("RGB", (300, 200)), "PNG"))
    png.seek(10)
    assert decoding_cost(png) == 300 * 200 * PEAK_BYTES_PER_PIXEL
    assert png.tell() == 0
    # A 24 MP JPEG is decoded at half its size, as load_image decodes it.
    jpeg = _encode(Image.new("RGB", (6000, 4000)), "JPEG")
    assert decoding_cost(jpeg) == 3000 * 2000 * PEAK_BYTES_PER_PIXEL
    assert decoding_cost(b"not an image") == DECODE_BUDGET


def test_transparency_is_composited_on_white_exactly_as_on_a_white_canvas() -> None:
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 4), np.uint8))
    for image in (rgba, rgba.convert("LA"), rgba.convert("RGBa"), rgba.convert("PA")):
        expected = _on_white_canvas(image)
        assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(expected)), image.mode


def _on_white_canvas(image: Image.Image) -> Image.Image:
    white = Image.new("RGBA", image.size, "white")
    return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
