"""The one image preprocessing used by training, evaluation and serving.

Every path from bytes or a file to a model input goes through ``load_image``
and ``prepare`` (or ``to_model_input`` for a model without a scale check);
nothing else may decode or resize images for a model.
Uploads are checked with ``sniff_format`` first, so only accepted formats reach
the decoder.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from app.core.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from app.core.formats import ALLOWED_FORMATS, FORMAT_NAMES, claimed_format
from app.core.imaging import pixels, unit_floats
from app.core.model_card import ScaleSpec
from app.core.scale import ScaleCheck, check_scale

# Pixels above this are refused before decoding (decompression bombs, and memory: a 24 MP
# microscope camera's photograph is the largest a worker takes).
MAX_PIXELS = 24_000_000
# Bytes a worker holds at the peak of decoding and preparing one pixel, as measured
# (docs/decisions.md): Pillow's WebP decoder keeps two RGBA canvases and a copy of the frame
# besides the picture, and 32-bit grey is scaled through a float copy.
PEAK_BYTES_PER_PIXEL = 8
COSTLY_IMAGES = {"WEBP": "WebP images", "I": "32-bit grey images", "F": "32-bit grey images"}
COSTLY_PEAK_BYTES_PER_PIXEL = 16
# What decoding one photograph at the pixel limit holds: no accepted photograph costs more,
# and a request decodes its photographs in groups that cost no more together.
DECODE_BUDGET = MAX_PIXELS * PEAK_BYTES_PER_PIXEL
PHOTOGRAPH_SIZE = "photograph_size"
# A JPEG whose short side is at least twice this is decoded at a reduced size (draft mode).
DRAFT_MIN_SIDE = 1536
RESAMPLE = Image.Resampling.BILINEAR
RESAMPLE_NAME = "bilinear"
PREPROCESSING_SPEC = {
    "decode": "Pillow, first frame",
    "orientation": "EXIF transpose",
    "color": "convert to RGB (alpha composited on white)",
    "resize": f"{RESAMPLE_NAME}, to input_size x input_size, aspect ratio not kept",
    "scale": "float32 in [0, 1]",
}
SCALED_RESIZE = (
    f"the centre square, resampled into the training cell-scale range (see 'scale'), "
    f"then {RESAMPLE_NAME} to input_size x input_size"
)
# Phones write HEIC by default; the opener makes it one more format Pillow reads.
register_heif_opener()
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

ImageSource = bytes | str | Path | BinaryIO


def sniff_format(data: bytes) -> str:
    """The upload's image format from its content (never its name).

    Raises ImageDecodeError for empty or damaged images and
    UnsupportedImageError for anything that is not an accepted image format.
    Only the header is read. Absurd declared sizes raise ImageTooLargeError here;
    the pixel limit itself is enforced by ``load_image``.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
                return str(image.format)
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"its header declares over {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels "
            f"(a decompression bomb?); the limit is {MAX_PIXELS:,} pixels"
        ) from None
    except UnidentifiedImageError:
        claimed = claimed_format(data)
        if claimed:
            message = f"the file starts like a {claimed} image but is damaged"
            raise ImageDecodeError(message) from None
        raise UnsupportedImageError(
            f"the file is not a supported image; upload {FORMAT_NAMES}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot read the image header: {exc}") from exc


def decoding_cost(source: bytes | IO[bytes]) -> int:
    """Bytes that decoding ``source`` holds at its peak, from its header (a JPEG's reduced
    decoding counted); DECODE_BUDGET when the header cannot be read. A stream is read from
    its start and left there."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        stream.seek(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream, formats=ALLOWED_FORMATS) as image:
                _reduce_while_decoding(image)
                return int(image.width * image.height * _peak_bytes_per_pixel(image))
    except Exception:  # decoding reports the error properly later
        return DECODE_BUDGET
    finally:
        stream.seek(0)


def pixel_limit(image: Image.Image) -> int:
    """The most pixels accepted in the image's format and mode: the ones that cost
    DECODE_BUDGET to decode (MAX_PIXELS for most; 12 MP for WebP)."""
    return min(MAX_PIXELS, DECODE_BUDGET // _peak_bytes_per_pixel(image))


def _peak_bytes_per_pixel(image: Image.Image) -> int:
    return COSTLY_PEAK_BYTES_PER_PIXEL if _costly(image) else PEAK_BYTES_PER_PIXEL


def _costly(image: Image.Image) -> str | None:
    """What makes the image cost more to decode than most (its format or mode), in words."""
    return COSTLY_IMAGES.get(str(image.format)) or COSTLY_IMAGES.get(image.mode)


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``source`` into an upright RGB image.

    Raises ImageTooLargeError for images over ``max_pixels`` (checked from the
    header, before the pixels are decoded) and ImageDecodeError for anything
    that is not a complete, decodable image.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(source)
            width, height = image.size
            _check_pixels(image, max_pixels)
            image.seek(0)
            _reduce_while_decoding(image)
            image.load()
            if image.format == "WEBP":
                # Pillow's WebP file holds its decoder's canvases and frame (3x the picture)
                # for as long as it lives: the picture is kept without them.
                image = image.copy()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    if image.width < 1 or image.height < 1:
        raise ImageDecodeError("image has no pixels")
    reduced_by = width / image.width  # above 1 when decoded in draft mode
    upright = to_rgb(_upright(image))
    # The photograph's own size, upright, however it was decoded (reported, and recorded).
    upright.info[PHOTOGRAPH_SIZE] = (
        round(upright.width * reduced_by),
        round(upright.height * reduced_by),
    )
    return upright


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    """ImageTooLargeError when the header declares more pixels than the image may have."""
    width, height = image.size
    limit = min(max_pixels, pixel_limit(image))
    if width * height <= limit:
        return
    kind = _costly(image)
    if kind and limit < max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels; the limit for {kind} is {limit:,} pixels "
            "(they take twice the memory of others to decode)"
        )
    raise ImageTooLargeError(f"image is {width}x{height} pixels; the limit is {limit:,} pixels")


def photograph_size(image: Image.Image) -> tuple[int, int]:
    """The size of the photograph ``load_image`` decoded ``image`` from."""
    size = image.info.get(PHOTOGRAPH_SIZE)
    return (int(size[0]), int(size[1])) if size else image.size


def _reduce_while_decoding(image: Image.Image) -> None:
    """A big JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's own scaling, so the
    full picture is never held), keeping the short side at least DRAFT_MIN_SIDE: cells stay
    far larger than the few pixels the model is given, and memory drops up to 64 times."""
    if image.format != "JPEG" or min(image.size) < 2 * DRAFT_MIN_SIDE:
        return
    factor = DRAFT_MIN_SIDE / min(image.size)
    image.draft(image.mode, (round(image.width * factor), round(image.height * factor)))


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; as stored when the EXIF is unreadable
    (Pillow raises SyntaxError, ValueError, struct.error... on a damaged block)."""
    try:
        # In place: otherwise Pillow returns a copy even of an upright image (72 MB at 24 MP).
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # the pixels are fine, only the orientation is lost
        return image
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16"):
        # 16-bit grey to 8 bits by its range (v * 255 / 65535 is v // 257), in 16-bit integers:
        # a float copy of a 24 MP microscope image would cost 200 MB.
        grey = (np.asarray(image) // 257).astype(np.uint8)
        image = Image.fromarray(grey, mode="L")
    elif image.mode in _HIGH_BIT_DEPTH_MODES:
        # 32-bit grey ("I", "F") to 8 bits by its range, in place in one float32 copy.
        array = np.array(image, dtype=np.float32)
        array *= 255.0 / (65535.0 if array.max() > 255 else 255.0)
        np.clip(array, 0, 255, out=array)
        image = Image.fromarray(array.astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        return _on_white(image)
    return image.convert("RGB")


def _on_white(image: Image.Image) -> Image.Image:
    """An image with an alpha band composited on white, in one RGB copy: white is pasted
    through the inverted alpha (a composite on a white RGBA canvas held three copies)."""
    transparency = ImageChops.invert(image.getchannel(image.getbands()[-1]))
    rgb = image.convert("RGB")
    rgb.paste((255, 255, 255), (0, 0, *rgb.size), transparency)
    return rgb


def to_model_input(image: Image.Image, input_size: int) -> np.ndarray:
    """Resize an RGB image to ``input_size`` square and scale it to float32 [0, 1]."""
    if image.mode != "RGB":
        image = to_rgb(image)
    if image.size != (input_size, input_size):
        image = image.resize((input_size, input_size), RESAMPLE)
    return unit_floats(pixels(image))


def preprocess(source: ImageSource, input_size: int) -> np.ndarray:
    """Bytes or path to a model-ready ``(input_size, input_size, 3)`` array."""
    return to_model_input(load_image(source), input_size)


@dataclass(frozen=True)
class PreparedImage:
    """What a model sees of a photograph: its field, the model input and the scale check.

    ``field`` is the square part of the photograph the model input is made of, at
    the photograph's own resolution (the explanation is drawn on it). ``scale`` is
    None for a model without a scale check, which takes the whole photograph.
    """

    field: Image.Image
    x: np.ndarray
    scale: ScaleCheck | None


def prepare(image: Image.Image, input_size: int, scale: ScaleSpec | None) -> PreparedImage:
    """The model input of a decoded photograph; CaptureError when its scale is unusable."""
    if scale is None:
        return PreparedImage(image, to_model_input(image, input_size), None)
    check = check_scale(image, scale)
    field = square_field(image, round(min(image.size) / check.resampled_by))
    return PreparedImage(field, to_model_input(field, input_size), check)


def square_field(image: Image.Image, side: int) -> Image.Image:
    """The centred ``side`` square of ``image``, mirrored at its edges where it is smaller."""
    width, height = image.size
    if side <= min(width, height):
        left, top = (width - side) // 2, (height - side) // 2
        if (left, top, side) == (0, 0, width) and width == height:
            return image
        return image.crop((left, top, left + side, top + side))
    pixels = np.asarray(image)
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    pixels = pixels[top : top + side, left : left + side]
    pad_y, pad_x = side - pixels.shape[0], side - pixels.shape[1]
    padding = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0))
    return Image.fromarray(np.pad(pixels, padding, mode="symmetric"))
