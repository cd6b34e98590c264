"""The capture-robustness suite: the test images as other cameras, objectives, phones and
files would have brought them, each sent through the served path (``InferenceService.classify``).

Every set is made with transforms that no model was trained with: the field models'
augmentation (``training/augment.py``: Gaussian blur, additive noise, standard JPEG
tables at quality 30-95 with 4:2:0 chroma, zoom 0.75-1.25 with mirrored margins, colour
temperature as red and blue gains, vignetting, hue, saturation, brightness, contrast,
channel gains, scale-bar masking), the cell models' (``training/cell_mil.py``: HED stain
gains and offsets, brightness, flips, 90-degree rotations) and the fixed variants the
"uncertain" threshold is fitted on (``training/perturbations.py``). ``CAPTURE_NOTES``
says, per set, what it does and why training does not have it; the unit tests check it.

Every image ends in one of four outcomes: refused (its scale or format), flagged out of
distribution, called uncertain, or answered. Coverage is the share answered; silent
errors are answers that are wrong. The ``foreign_`` sets are photographs the product
should not read at all: for them the target is the reverse, at most 5% answered.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps
from pillow_heif import register_heif_opener
from scipy import ndimage

from app.core.classes import CLASS_IDS
from app.core.errors import AnalysisRefusedError
from app.core.preprocessing import load_image
from training.data import Sample
from training.foreign import cell_box
from training.markdown import table
from training.progress import track

if TYPE_CHECKING:
    # Only for annotations: the command line reads the capture sets without TensorFlow.
    from app.core.service import InferenceService

Capture = Callable[[Image.Image], bytes]
Transform = Callable[[Image.Image], Image.Image]

# HEIC is written as phones write it; the served path reads it through the same opener.
register_heif_opener()

CAPTURE_HEADING = "## Real captures"
SILENT_ERROR_TARGET = 0.005
DEFAULT_COVERAGE_TARGET = 0.90
# Sets whose coverage target is not the default (the issue allows a phone 75%).
COVERAGE_TARGETS = {"phone_like": 0.75}
FOREIGN_PREFIX = "foreign_"
# A foreign photograph answered is answered silently: the guard's own target flags 95% of them.
FOREIGN_COVERAGE_LIMIT = 0.05
# A phone's 12 MP frame (4:3); the field fills it, as the phone's zoom is set to.
PHONE_FRAME = (4032, 3024)
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


# --- Encoders -----------------------------------------------------------------------------


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int) -> bytes:
    """Pillow's standard (IJG) tables at ``quality``: training's JPEG, so in no capture set."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_with_tables(
    image: Image.Image, luma: Sequence[int], chroma: Sequence[int], subsampling: str
) -> bytes:
    """A JPEG quantised with the given 8x8 tables (natural order) and chroma subsampling."""
    buffer = io.BytesIO()
    image.save(
        buffer,
        format="JPEG",
        qtables=[list(luma), list(chroma)],
        subsampling=SUBSAMPLING[subsampling],
    )
    return buffer.getvalue()


def webp(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=4)
    return buffer.getvalue()


def heic(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="HEIF", quality=quality)
    return buffer.getvalue()


def ramp_table(base: float, slope: float) -> list[int]:
    """An 8x8 quantisation table whose step grows by ``slope`` per unit of u + v."""
    return [min(255, round(base + slope * (u + v))) for v in range(8) for u in range(8)]


# Every coefficient quantised alike (some scanners and machine-vision cameras).
FLAT_LUMA, FLAT_CHROMA = [24] * 64, [32] * 64
# Steps growing linearly with frequency, unlike the IJG tables' perceptual shape.
STEEP_LUMA, STEEP_CHROMA = ramp_table(6, 8), ramp_table(12, 10)
# A phone's fine tables (its own, not IJG's scaled).
PHONE_LUMA, PHONE_CHROMA = ramp_table(2, 1.5), ramp_table(3, 2.5)


# --- Pixels in linear light ---------------------------------------------------------------


def floats(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8))


def to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] to linear light."""
    return np.asarray(np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4))


def to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light to sRGB values in [0, 1] (clipped, as a camera's output is)."""
    lin = np.clip(linear, 0.0, 1.0)
    return np.asarray(np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055))


def _seed(image: Image.Image) -> int:
    # Noise differs between photographs but the suite gives the same figures on every run.
    return zlib.crc32(image.tobytes())


# --- Blur kernels -------------------------------------------------------------------------


def motion_kernel(length: float, angle_degrees: float) -> np.ndarray:
    """A straight streak ``length`` pixels long at ``angle_degrees`` (anticlockwise from x)."""
    half = int(np.ceil(length / 2)) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 16 * max(1, round(length)))
    angle = np.radians(angle_degrees)
    xs, ys = half + t * np.cos(angle), half - t * np.sin(angle)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    # Each sample point spread over its four neighbours, so the streak has no jagged steps.
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return np.asarray(kernel / kernel.sum())


def disc_kernel(radius: float) -> np.ndarray:
    """A uniform disc of ``radius`` pixels: a defocused point seen through a round aperture."""
    r = int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    offsets = (np.arange(4) + 0.5) / 4 - 0.5
    # Each pixel's share inside the disc, from 4x4 sub-samples: an edge without steps.
    cover = np.zeros_like(yy)
    for dy in offsets:
        for dx in offsets:
            cover += (yy + dy) ** 2 + (xx + dx) ** 2 <= radius**2
    return np.asarray(cover / cover.sum())


def convolve_linear(kernel: np.ndarray) -> Transform:
    """Blur with ``kernel`` in linear light, where optics blur."""

    def blurred(image: Image.Image) -> Image.Image:
        lin = to_linear(floats(image))
        out = np.stack(
            [ndimage.convolve(lin[..., c], kernel, mode="reflect") for c in range(3)], axis=-1
        )
        return to_image(to_srgb(out))

    return blurred


# --- A sensor: photon counts on a Bayer mosaic, demosaiced --------------------------------

BAYER = np.array([[0, 1], [1, 2]])  # RGGB
# Malvar-He-Cutler demosaicing kernels (x 1/8): each missing colour from its own neighbours
# corrected by the recorded colour's Laplacian, so the channels share each photosite's noise.
_G_AT_RB = (
    np.array(
        [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]
    )
    / 8
)
_ALONG_ROW = (
    np.array(
        [
            [0, 0, 0.5, 0, 0],
            [0, -1, 0, -1, 0],
            [-1, 4, 5, 4, -1],
            [0, -1, 0, -1, 0],
            [0, 0, 0.5, 0, 0],
        ]
    )
    / 8
)
_ALONG_COLUMN = _ALONG_ROW.T
_DIAGONAL = (
    np.array(
        [
            [0, 0, -1.5, 0, 0],
            [0, 2, 0, 2, 0],
            [-1.5, 0, 6, 0, -1.5],
            [0, 2, 0, 2, 0],
            [0, 0, -1.5, 0, 0],
        ]
    )
    / 8
)


def bayer_channels(height: int, width: int) -> np.ndarray:
    """The colour each photosite of an RGGB mosaic records (0 red, 1 green, 2 blue)."""
    return BAYER[np.arange(height)[:, None] % 2, np.arange(width)[None, :] % 2]


def poisson_gaussian(
    raw: np.ndarray, electrons_at_white: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Raw values in [0, 1] as a sensor counts them: shot noise whose variance is the signal
    in electrons, plus read noise in electrons; returned in the same [0, 1] units."""
    electrons = rng.poisson(np.clip(raw, 0.0, 1.0) * electrons_at_white).astype(np.float64)
    electrons += rng.normal(0.0, read_noise, raw.shape)
    return np.asarray(electrons / electrons_at_white)


def demosaic(raw: np.ndarray) -> np.ndarray:
    """Malvar-He-Cutler demosaicing of an RGGB mosaic (gradient-corrected bilinear)."""
    h, w = raw.shape
    even_row = (np.arange(h) % 2 == 0)[:, None]
    even_col = (np.arange(w) % 2 == 0)[None, :]
    at_r, at_b = even_row & even_col, ~even_row & ~even_col
    at_g_in_r_row, at_g_in_b_row = even_row & ~even_col, ~even_row & even_col

    # "mirror" keeps the mosaic's parity at the border ("reflect" would not).
    def conv(kernel: np.ndarray) -> np.ndarray:
        return np.asarray(ndimage.convolve(raw, kernel, mode="mirror"))

    green_at_rb, row, column, diagonal = (
        conv(k) for k in (_G_AT_RB, _ALONG_ROW, _ALONG_COLUMN, _DIAGONAL)
    )
    red = np.select([at_r, at_g_in_r_row, at_g_in_b_row], [raw, row, column], diagonal)
    green = np.where(at_r | at_b, green_at_rb, raw)
    blue = np.select([at_b, at_g_in_b_row, at_g_in_r_row], [raw, row, column], diagonal)
    return np.stack([red, green, blue], axis=-1)


def sensor_noise(
    image: Image.Image, electrons_at_white: float = 400.0, read_noise: float = 3.0
) -> Image.Image:
    """The photograph re-exposed on a small-pixel sensor: linear light sampled through an
    RGGB mosaic, Poisson-Gaussian noise on each photosite, demosaicing, sRGB."""
    lin = to_linear(floats(image))
    channel = bayer_channels(image.height, image.width)
    raw = np.take_along_axis(lin, channel[..., None], axis=2)[..., 0]
    rng = np.random.default_rng(_seed(image))
    noisy = poisson_gaussian(raw, electrons_at_white, read_noise, rng)
    return to_image(to_srgb(demosaic(noisy)))


# --- Colour matrices in linear light ------------------------------------------------------

SRGB_TO_XYZ = np.array(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
)
BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)
D65_XY = (0.3127, 0.3290)
# Channel cross-talk of a sensor whose colour-correction matrix is not applied; rows sum to
# 1, so greys stay grey while colours mix.
CROSSTALK = np.array([[0.70, 0.25, 0.05], [0.15, 0.70, 0.15], [0.05, 0.30, 0.65]])


def planck_xy(kelvin: float) -> tuple[float, float]:
    """Chromaticity of a black body at ``kelvin`` (Kim et al.'s cubic fit, 1667-25000 K)."""
    t = float(kelvin)
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def white_point_matrix(kelvin: float) -> np.ndarray:
    """Linear-sRGB matrix that turns the D65 white into a black body's at ``kelvin``
    (Bradford adaptation), scaled so the new white's brightest channel is 1 (no clipping)."""
    cone_ratio = (BRADFORD @ _xyz(planck_xy(kelvin))) / (BRADFORD @ _xyz(D65_XY))
    xyz = np.linalg.inv(BRADFORD) @ np.diag(cone_ratio) @ BRADFORD
    matrix = np.linalg.inv(SRGB_TO_XYZ) @ xyz @ SRGB_TO_XYZ
    return np.asarray(matrix / (matrix @ np.ones(3)).max())


def colour_matrix(matrix: np.ndarray) -> Transform:
    """Every pixel's linear RGB multiplied by ``matrix``."""

    def mixed(image: Image.Image) -> Image.Image:
        return to_image(to_srgb(to_linear(floats(image)) @ np.asarray(matrix).T))

    return mixed


# --- Resampling and zoom -----------------------------------------------------------------


def resample(factor: float, method: Image.Resampling) -> Transform:
    """The same field at ``factor`` times the pixels, through ``method``."""

    def resized(image: Image.Image) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, method)

    return resized


def zoom(factor: float) -> Transform:
    """Another objective: below 1 a wider field whose margins repeat the field (tiled, with
    hard seams), above 1 the centre crop; Lanczos either way, the size kept."""

    def zoomed(image: Image.Image) -> Image.Image:
        w, h = image.size
        if factor < 1:
            small = image.resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)
            pixels = np.asarray(small)
            pad_y, pad_x = h - pixels.shape[0], w - pixels.shape[1]
            padding = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0))
            return Image.fromarray(np.pad(pixels, padding, mode="wrap"))
        cw, ch = round(w / factor), round(h / factor)
        left, top = (w - cw) // 2, (h - ch) // 2
        crop = image.crop((left, top, left + cw, top + ch))
        return crop.resize((w, h), Image.Resampling.LANCZOS)

    return zoomed


# --- A phone at the eyepiece --------------------------------------------------------------


def tone_curve(x: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """A phone's S-shaped tone curve on sRGB values: steeper in the mid-tones, flatter at
    the ends (monotonic for strength below 1)."""
    return np.asarray(x + 2 * strength * x * (1 - x) * (x - 0.5))


_TONE_LUT = [round(255 * float(v)) for v in tone_curve(np.arange(256) / 255)] * 3


def phone_like(image: Image.Image) -> bytes:
    """A phone at the eyepiece under a 5000 K lamp: its tone curve, the field filling a
    12 MP frame (Lanczos), unsharp masking, JPEG with the phone's own tables at 4:2:0."""
    warm = colour_matrix(white_point_matrix(5000))(image).point(_TONE_LUT)
    w, h = warm.size
    scale = PHONE_FRAME[0] / w
    crop_h = round(PHONE_FRAME[1] / scale)
    top = (h - crop_h) // 2
    frame = warm.crop((0, top, w, top + crop_h)).resize(PHONE_FRAME, Image.Resampling.LANCZOS)
    # The phone sharpens at the size of the optics' detail: about 0.7 of a field pixel.
    sharp = frame.filter(ImageFilter.UnsharpMask(radius=0.7 * scale, percent=120, threshold=2))
    return jpeg_with_tables(sharp, PHONE_LUMA, PHONE_CHROMA, "4:2:0")


# --- Foreign photographs -----------------------------------------------------------------


def bgr(image: Image.Image) -> Image.Image:
    """Red and blue swapped, as software that writes OpenCV's BGR as RGB does."""
    return Image.fromarray(np.ascontiguousarray(np.asarray(image)[..., ::-1]))


def single_cell(image: Image.Image, side: int = 360) -> Image.Image:
    """The largest leukocyte alone, enlarged to ``side`` pixels: an analyser's cell image."""
    return image.crop(cell_box(image)).resize((side, side), Image.Resampling.LANCZOS)


def screenshot(image: Image.Image) -> Image.Image:
    """The field shown at 1.5x in a 1280 x 800 window beside lines of text."""
    window = Image.new("RGB", (1280, 800), (246, 246, 246))
    draw = ImageDraw.Draw(window)
    draw.rectangle((0, 0, 1279, 31), fill=(60, 63, 70))
    side = round(1.5 * min(image.size))
    window.paste(image.resize((side, side), Image.Resampling.LANCZOS), (48, 80))
    font = ImageFont.load_default(size=18)
    lines = ("Slide 0423, 100x oil", "Peripheral blood smear", "Review: leukocytes", "Notes:")
    for i, line in enumerate(lines):
        draw.text((48 + side + 48, 96 + 40 * i), line, fill=(30, 30, 30), font=font)
    return window


def _png(transform: Transform) -> Capture:
    return lambda image: png(transform(image))


# Each set: its name, how it is made, and why no model was trained with it.
_SETS: tuple[tuple[str, Capture, str], ...] = (
    ("unperturbed", png, "the test photograph as it is (PNG, lossless)"),
    (
        "motion_blur",
        _png(convolve_linear(motion_kernel(9, 30))),
        "a 9 px streak at 30 degrees in linear light (the stage or the phone moved); "
        "training blurs only with isotropic Gaussians",
    ),
    (
        "defocus_disc",
        _png(convolve_linear(disc_kernel(2.5))),
        "a uniform disc of radius 2.5 px in linear light (defocus through a round aperture); "
        "training's Gaussians have no hard edge",
    ),
    (
        "sensor_noise",
        _png(sensor_noise),
        "Poisson shot noise (400 electrons at white) and 3 electrons of read noise on an RGGB "
        "mosaic, demosaiced (Malvar-He-Cutler): noise that grows with brightness and is "
        "shared between neighbouring pixels and channels; training adds independent "
        "Gaussian noise",
    ),
    (
        "camera_ccm",
        _png(colour_matrix(CROSSTALK)),
        "a sensor's channel cross-talk left uncorrected, a full 3x3 matrix in linear light "
        "that keeps greys; training changes colour by channel gains, hue and saturation",
    ),
    (
        "white_point_4000k",
        _png(colour_matrix(white_point_matrix(4000))),
        "a 4000 K lamp under a daylight white balance (Bradford adaptation, a full 3x3 "
        "matrix in linear light); training's colour temperature is red and blue gains",
    ),
    (
        "white_point_10000k",
        _png(colour_matrix(white_point_matrix(10000))),
        "a 10000 K (cold LED) lamp, as above",
    ),
    (
        "jpeg_flat_444",
        lambda image: jpeg_with_tables(image, FLAT_LUMA, FLAT_CHROMA, "4:4:4"),
        "JPEG with flat quantisation tables (24 luma, 32 chroma) and full-resolution chroma; "
        "training's JPEG is the standard tables at quality 30-95 with 4:2:0 chroma",
    ),
    (
        "jpeg_steep_422",
        lambda image: jpeg_with_tables(image, STEEP_LUMA, STEEP_CHROMA, "4:2:2"),
        "JPEG with tables whose step grows linearly with frequency (6-118 luma, 12-152 "
        "chroma) and 4:2:2 chroma",
    ),
    (
        "webp_q50",
        lambda image: webp(image, 50),
        "lossy WebP at quality 50 (VP8: 4x4 transforms, intra prediction, a loop filter); "
        "never in training",
    ),
    (
        "heic_q50",
        lambda image: heic(image, 50),
        "HEIC at quality 50 (HEVC intra coding, as phones store photographs); never in training",
    ),
    (
        "resample_nearest_0.85",
        _png(resample(0.85, Image.Resampling.NEAREST)),
        "the same field at 0.85x the pixels by nearest neighbour (aliased); training "
        "resamples by area and bilinear filters only",
    ),
    (
        "resample_box_0.7",
        _png(resample(0.7, Image.Resampling.BOX)),
        "the same field at 0.7x the pixels by a box filter",
    ),
    (
        "resample_lanczos_1.25",
        _png(resample(1.25, Image.Resampling.LANCZOS)),
        "the same field at 1.25x the pixels by Lanczos (ringing at edges)",
    ),
    *(
        (
            f"zoom_{factor:g}",
            _png(zoom(factor)),
            f"a {factor:g}x objective: cells {factor:g}x their size in the field, "
            + (
                "the margins tiled copies with hard seams; training zooms out only to 0.75, "
                "with mirrored margins"
                if factor < 1
                else "by Lanczos; training zooms in only to 1.25 (crops of 0.8), bilinear"
            ),
        )
        for factor in (0.6, 0.7, 1.4, 1.5)
    ),
    (
        "phone_like",
        phone_like,
        "a phone at the eyepiece: a 5000 K lamp (colour matrix), an S-shaped tone curve, the "
        "field's width filling a 12 MP 4:3 frame by Lanczos (top and bottom cut), unsharp "
        "masking, JPEG with the phone's own tables at 4:2:0; none of these is in training",
    ),
    (
        "foreign_bgr",
        _png(bgr),
        "foreign: red and blue swapped (software writing BGR); should be flagged, not answered",
    ),
    (
        "foreign_inverted",
        _png(ImageOps.invert),
        "foreign: a colour negative; should be flagged or refused",
    ),
    (
        "foreign_single_cell",
        _png(single_cell),
        "foreign: one leukocyte enlarged to 360 px, as a cell analyser exports it; should be "
        "refused (scale) or flagged",
    ),
    (
        "foreign_screenshot",
        _png(screenshot),
        "foreign: the field at 1.5x in a 1280 x 800 window beside text; should be flagged",
    ),
)
CAPTURES: dict[str, Capture] = {name: capture for name, capture, _ in _SETS}
CAPTURE_NOTES: dict[str, str] = {name: note for name, _, note in _SETS}


# Training's colour temperature and vignetting, kept only for the browser test's refused
# phone photograph: no capture set uses them (tests/unit/test_capture.py checks).
WARM = (1.10, 1.0, 0.80)


def white_balance(gains: tuple[float, float, float]) -> Transform:
    def balance(image: Image.Image) -> Image.Image:
        x = np.asarray(image, dtype=np.float32) * np.array(gains, dtype=np.float32)
        return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))

    return balance


def vignette(image: Image.Image, strength: float = 0.45) -> Image.Image:
    w, h = image.size
    yy, xx = np.mgrid[:h, :w]
    r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
    gain = 1 - strength * np.clip(r2 / 2, 0, 1)
    x = np.asarray(image, dtype=np.float32) * gain[..., None]
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def is_foreign(capture: str) -> bool:
    return capture.startswith(FOREIGN_PREFIX)


@dataclass(frozen=True)
class Outcomes:
    """One model's outcome on each image of one set, before the uncertain rule."""

    labels: np.ndarray
    refused: np.ndarray
    ood: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    # Calibrated probabilities, one row per image in CLASS_IDS order (zeros where refused).
    probabilities: np.ndarray

    def answered(self, uncertain_below: float | None) -> np.ndarray:
        confident = self.confidence >= (uncertain_below or 0.0)
        return np.asarray(~self.refused & ~self.ood & confident)

    def wrong(self) -> np.ndarray:
        return np.asarray(self.predicted != self.labels)


def run(
    service: InferenceService,
    samples: Sequence[Sample],
    captures: dict[str, Capture] = CAPTURES,
    models: Sequence[str] | None = None,
) -> dict[str, dict[str, Outcomes]]:
    """model -> set -> outcomes, every image sent as bytes through ``classify``."""
    names = list(models or [card.name for card in service.models()])
    rows: dict[str, dict[str, list[_Row]]] = {n: {c: [] for c in captures} for n in names}
    for sample in track(samples, f"capture suite on {len(samples)} images"):
        image = load_image(sample.path)
        for capture_name, capture in captures.items():
            data = capture(image)
            for name in names:
                rows[name][capture_name].append(_outcome(service, data, name))
    labels = np.array([s.label for s in samples])
    out: dict[str, dict[str, Outcomes]] = {}
    for name in names:
        out[name] = {}
        for capture_name, outcomes in rows[name].items():
            refused, ood, predicted, confidence, probs = (
                np.array(v) for v in zip(*outcomes, strict=True)
            )
            out[name][capture_name] = Outcomes(labels, refused, ood, predicted, confidence, probs)
    return out


_Row = tuple[bool, bool, int, float, tuple[float, ...]]


def _outcome(service: InferenceService, data: bytes, model: str) -> _Row:
    try:
        p = service.classify(data, model)
    except AnalysisRefusedError:
        return True, False, -1, 0.0, (0.0,) * len(CLASS_IDS)
    index = list(p.probabilities).index(p.class_id)
    probs = tuple(p.probabilities[c] for c in CLASS_IDS)
    return False, bool(p.out_of_distribution), index, p.confidence, probs


@dataclass(frozen=True)
class SetScore:
    accuracy: float | None
    coverage: float
    silent_errors: float
    refused: float
    ood: float

    @classmethod
    def of(cls, o: Outcomes, uncertain_below: float | None) -> SetScore:
        answered = o.answered(uncertain_below)
        right = answered & ~o.wrong()
        return cls(
            accuracy=float(right.sum() / answered.sum()) if answered.any() else None,
            coverage=float(answered.mean()),
            silent_errors=float((answered & o.wrong()).mean()),
            refused=float(o.refused.mean()),
            ood=float((~o.refused & o.ood).mean()),
        )


def coverage_target(capture: str) -> float | None:
    """The least coverage a set must reach (None for a foreign set, which has a limit)."""
    if is_foreign(capture):
        return None
    return COVERAGE_TARGETS.get(capture, DEFAULT_COVERAGE_TARGET)


def coverage_limit(capture: str) -> float | None:
    """The most coverage a set may reach: a foreign set's answers are all silent."""
    return FOREIGN_COVERAGE_LIMIT if is_foreign(capture) else None


def coverage_met(capture: str, coverage: float) -> bool:
    target, limit = coverage_target(capture), coverage_limit(capture)
    return (target is None or coverage >= target) and (limit is None or coverage <= limit)


def _coverage_cell(capture: str, coverage: float) -> str:
    cell = f"{100 * coverage:.1f}%"
    if coverage_met(capture, coverage):
        return cell + " ✓"
    target, limit = coverage_target(capture), coverage_limit(capture)
    wanted = f"at most {100 * limit:.0f}%" if limit is not None else f"{100 * (target or 0):.0f}%"
    return f"{cell} ✗ (target {wanted})"


def _silent_cell(silent_errors: float) -> str:
    mark = "✓" if silent_errors <= SILENT_ERROR_TARGET else "✗"
    return f"{100 * silent_errors:.1f}% {mark}"


CAPTURE_COMMAND = "python -m training capture --data-dir DIR --split test"


def capture_markdown(
    scores: dict[str, dict[str, SetScore]],
    display: dict[str, str],
    split: str = "test",
    command: str = CAPTURE_COMMAND,
    n_images: int | None = None,
) -> str:
    """The report's capture section: the sets, and per model and set accuracy, coverage,
    silent errors, refusals and flags, each marked against its target."""
    rows: list[list[str]] = []
    missed: list[str] = []
    for name, sets in scores.items():
        for capture, s in sets.items():
            accuracy = "n/a" if s.accuracy is None else f"{100 * s.accuracy:.1f}%"
            if not coverage_met(capture, s.coverage) or s.silent_errors > SILENT_ERROR_TARGET:
                missed.append(f"{display[name]} {capture}")
            rows.append(
                [
                    display[name],
                    capture,
                    accuracy,
                    _coverage_cell(capture, s.coverage),
                    _silent_cell(s.silent_errors),
                    f"{100 * s.refused:.1f}%",
                    f"{100 * s.ood:.1f}%",
                ]
            )
    n_pairs = sum(len(sets) for sets in scores.values())
    images = f"{n_images} " if n_images is not None else ""
    names = sorted({capture for sets in scores.values() for capture in sets}, key=_set_order)
    return "\n".join(
        [
            f"{CAPTURE_HEADING}: the capture-robustness suite",
            "",
            f"Generated by `{command}`. Every one of the {images}{split} images re-taken as "
            "another camera, objective, phone or file would bring it (`training/capture.py`) "
            "and sent as a file through the served path (`InferenceService.classify`): the "
            "scale check, the model, the out-of-distribution guard and the uncertain rule. "
            "No set uses a transform of the training augmentation (`training/augment.py`, "
            "`training/cell_mil.py`) or of the variants the uncertain threshold was fitted on "
            "(`training/perturbations.py`); `tests/unit/test_capture.py` checks it. Nothing "
            "here was used to choose or fit anything. *Accuracy* is over the answered "
            "images; *coverage* is the share answered (not refused, flagged or uncertain); "
            "*silent errors* are wrong answers, as a share of all images. Targets: silent "
            "errors at most 0.5% on every set; coverage at least 90% (phone-like 75%); a "
            "`foreign_` set is a photograph the product should not read, so its coverage "
            "must be at most 5%. ✓ marks a figure that meets its target, ✗ one that misses.",
            "",
            "The sets, and why no model was trained with them:",
            "",
            *(f"- `{capture}`: {CAPTURE_NOTES.get(capture, '')}" for capture in names),
            "",
            f"Targets met by {n_pairs - len(missed)} of {n_pairs} model and set pairs. "
            "Coverage / silent errors per set:",
            "",
            table(["set", *(display[name] for name in scores)], _summary(scores, names)),
            "",
            "In full:",
            "",
            table(
                [
                    "model",
                    "set",
                    "accuracy",
                    "coverage",
                    "silent errors",
                    "refused (scale)",
                    "flagged (OOD)",
                ],
                rows,
            ),
            "",
        ]
    )


def _summary(scores: dict[str, dict[str, SetScore]], names: Sequence[str]) -> list[list[str]]:
    """One row per set, one "coverage / silent errors" cell per model, each marked."""
    rows = []
    for capture in names:
        cells = [capture]
        for sets in scores.values():
            s = sets.get(capture)
            cells.append(
                "-"
                if s is None
                else f"{_coverage_cell(capture, s.coverage).split(' (')[0]} / "
                f"{_silent_cell(s.silent_errors)}"
            )
        rows.append(cells)
    return rows


def _set_order(capture: str) -> int:
    names = list(CAPTURES)
    return names.index(capture) if capture in names else len(names)
