"""How large the cells of a smear photograph are, and whether the models know that scale.

Cameras, objectives and crops change how many pixels a cell spans; the models
were trained at one scale. This measures the cells of any photograph so the
preprocessing can resample it into the training photographs' range of scales,
or refuse it with the reason and the fix (``check_scale``).

The measure: separate the cells from the background (after dividing out uneven
illumination and the background's colour, so vignetting and white balance do
not matter), fill the red cells' pale centres, and take 6 x the mean distance
from a cell pixel to the background. For a field of discs of diameter D that is
about D, and unlike a count of separate cells it does not break down where
cells touch. It is taken where cells span about ``WORK_SIZE`` pixels, so its
pixel bias is the same for every photograph.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from app.core import masks
from app.core.errors import CaptureError
from app.core.imaging import bilinear, pixels, unit_floats
from app.core.model_card import ScaleSpec
from app.core.ranks import median

# Cells' size measure in the working image; the training photographs measure about twice this.
WORK_SIZE = 13.0
# A first look at this long side finds the scale at which to measure.
FIRST_LOOK_SIDE = 128
# A first look within this ratio of WORK_SIZE is measured precisely enough already.
CLOSE_ENOUGH = 1.35
# The largest working image (12 MP phone photographs are reduced first).
MAX_WORK_SIDE = 1200
# Background is sought in a grid of blocks; uneven illumination is a smooth surface over it.
BLOCKS = 12
_TERMS = [(i, j) for i in range(5) for j in range(5) if i + j <= 4]
_SURFACE_GRID = 32
# Weight of brightness against colour when telling cells from background.
LUMINANCE_WEIGHT = 0.5
# Shares of the image the cells must cover for a measurement to mean anything.
MIN_CELL_FRACTION = 0.02
MAX_CELL_FRACTION = 0.9
# A short side under this holds no whole cell to measure (a 1-pixel line, an icon).
MIN_SIDE = 16


@dataclass(frozen=True)
class CellScale:
    """The cells' size in the photograph's pixels, or why it could not be measured.

    ``uncertainty`` is the measure's relative standard error, from how much it
    varies between the parts of the image (0.05: plus or minus 5%).
    """

    size_px: float | None
    cell_fraction: float
    uncertainty: float | None = None
    reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.size_px is not None


def _design(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x**i * y**j for i, j in _TERMS], -1)


_BLOCK_XY = (np.mgrid[:BLOCKS, :BLOCKS] + 0.5) / BLOCKS - 0.5
_BLOCK_DESIGN = _design(_BLOCK_XY[1], _BLOCK_XY[0]).reshape(-1, len(_TERMS))
_BLOCK_FIT = np.linalg.pinv(_BLOCK_DESIGN)
_GRID_XY = (np.mgrid[:_SURFACE_GRID, :_SURFACE_GRID] + 0.5) / _SURFACE_GRID - 0.5
_GRID_DESIGN = _design(_GRID_XY[1], _GRID_XY[0])


def illumination(lum: np.ndarray) -> np.ndarray:
    """Brightness of the bare background across the image: a smooth quartic surface
    through each block's bright pixels, blocks covered by cells left out."""
    h, w = lum.shape
    bh, bw = h // BLOCKS, w // BLOCKS
    if bh < 2 or bw < 2:
        return np.full_like(lum, max(float(np.percentile(lum, 90)), 1e-3))
    blocks = lum[: bh * BLOCKS, : bw * BLOCKS].reshape(BLOCKS, bh, BLOCKS, bw)
    pixels = blocks.transpose(0, 2, 1, 3).reshape(BLOCKS * BLOCKS, -1)
    k = int(0.9 * (pixels.shape[1] - 1))
    tops = np.partition(pixels, k, axis=1)[:, k]
    coef = _BLOCK_FIT @ tops  # least squares over every block
    keep = tops >= (_BLOCK_DESIGN @ coef) * 0.93
    if keep.sum() >= 2 * len(_TERMS):
        # Again without the blocks covered by cells. OpenCV's solver, not NumPy's LAPACK: it
        # lets go of the GIL, so the image threads of a case work side by side.
        coef = least_squares(_BLOCK_DESIGN[keep], tops[keep])
    grid = np.asarray(_GRID_DESIGN @ coef, dtype=np.float32)
    # OpenCV's bilinear enlargement: Pillow's to the last bit on all but about 6 pixels in 100,000.
    surface = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(np.maximum(surface, np.float32(1e-3), out=surface))


def least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The coefficients minimising ``|design @ coef - values|``, as ``np.linalg.lstsq``
    gives them: by the normal equations' Cholesky factor (a tenth of an SVD's time), or by
    SVD where the kept blocks leave the surface undetermined (the factor does not exist)."""
    b = values.astype(np.float64)
    ok, solved = cv2.solve(design, b, flags=cv2.DECOMP_NORMAL | cv2.DECOMP_CHOLESKY)
    if not ok:
        _, solved = cv2.solve(design, b, flags=cv2.DECOMP_SVD)
    return np.asarray(solved).ravel()


def flattening(lum: np.ndarray) -> np.ndarray:
    """``1 / illumination(lum)``: what evens out the image's illumination (a new array)."""
    surface = illumination(lum)
    np.divide(1, surface, out=surface)
    return surface


def otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """Otsu's threshold over the values' range up to their 99th percentile."""
    sample = values[::2, ::2].ravel()
    k = int(0.99 * (sample.size - 1))
    top = float(np.partition(sample, k)[k]) + 1e-6
    index = np.minimum((values * (bins / top)).astype(np.int32), bins - 1)
    p = np.bincount(index.ravel(), minlength=bins) / values.size
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(bins))
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    return (int(np.argmax(between)) + 1) * top / bins


def cell_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean mask of the cells (red and white) of an RGB float image in [0, 1]."""
    red, green, blue = cv2.split(rgb)  # planes: per-pixel maths is faster
    lum = (red + green + blue) * np.float32(1 / 3)
    flatten = flattening(lum)
    ratio = lum * flatten
    sample = ratio[::2, ::2].ravel()
    k = int(0.75 * (sample.size - 1))
    # Indices, not a mask: the same pixels, taken four times far faster.
    bright = np.flatnonzero(ratio >= np.partition(sample, k)[k])[::3]
    lit = flatten.take(bright)
    colour = [plane.take(bright) * lit for plane in (red, green, blue)]
    background = np.maximum(np.array([median(c) for c in colour], np.float32), 1e-3)
    r, g, b = (plane * flatten / c for plane, c in zip((red, green, blue), background, strict=True))
    total = np.maximum(r + g + b, 1e-3)
    # |chromaticity - background's|^2 = 9 * sum(rel^2) / total^2 - 3, plus a brightness term.
    chroma = np.maximum(9 * (r * r + g * g + b * b) / (total * total) - 3, 0)
    dev = np.sqrt(chroma + (LUMINANCE_WEIGHT * (1 - total / 3)) ** 2)
    # The red cells' pale centres are background pixels that do not reach the border.
    return masks.fill_holes(masks.opening(dev > otsu_threshold(dev)))


@dataclass(frozen=True)
class _Measure:
    size: float | None
    fraction: float
    uncertainty: float | None = None


def size_measure(rgb: np.ndarray) -> _Measure:
    """6 x the mean distance of a cell pixel to the background, with its standard error."""
    mask = cell_mask(rgb)
    fraction = float(mask.mean())
    if not MIN_CELL_FRACTION <= fraction <= MAX_CELL_FRACTION:
        return _Measure(None, fraction)
    # The mean of the taxicab and chessboard distances is within 1% of the Euclidean one.
    distance = masks.taxicab_chessboard_mean(mask)
    mean = float(distance[mask].mean())
    return _Measure(6.0 * mean - 1.0, fraction, _relative_error(distance, mask, mean))


def _relative_error(distance: np.ndarray, mask: np.ndarray, mean: float, parts: int = 4) -> float:
    """Standard error of the mean distance from the spread of its value over image parts."""
    h, w = mask.shape
    ph, pw = h // parts, w // parts
    sums = distance[: ph * parts, : pw * parts].reshape(parts, ph, parts, pw).sum(axis=(1, 3))
    counts = mask[: ph * parts, : pw * parts].reshape(parts, ph, parts, pw).sum(axis=(1, 3))
    used = counts > 0
    if used.sum() < 2 or mean <= 0:
        return 1.0
    weights = counts[used] / counts[used].sum()
    means = sums[used] / counts[used]
    spread = float(np.sqrt((weights * (means - mean) ** 2).sum()))
    effective = 1.0 / float((weights**2).sum())
    return spread / float(np.sqrt(effective)) / mean


def _resized(image: Image.Image, scale: float) -> tuple[np.ndarray, float]:
    """The image at ``scale`` as floats in [0, 1], and the scale actually used."""
    if scale < 1.0:
        factor = int(1 / scale)
        small = image.reduce(factor) if factor >= 2 else image
        size = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
        image_at = small if small.size == size else bilinear(small, size)
    elif scale > 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image_at = image.resize(size, Image.Resampling.BILINEAR)
    else:
        image_at = image
    return unit_floats(pixels(image_at)), image_at.width / image.width


def measure_cells(image: Image.Image) -> CellScale:
    """The cells' size in ``image``'s own pixels (an RGB photograph of any size)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    long_side = max(image.size)
    first, s = _resized(image, min(1.0, FIRST_LOOK_SIDE / long_side))
    found = size_measure(first)
    if found.size is not None and not 1 / CLOSE_ENOUGH <= found.size / WORK_SIZE <= CLOSE_ENOUGH:
        work, s = _resized(image, min(WORK_SIZE / (found.size / s), MAX_WORK_SIDE / long_side))
        found = size_measure(work)
    if found.size is None:
        return CellScale(None, found.fraction, reason=_no_cells_reason(found.fraction))
    return CellScale(found.size / s, found.fraction, found.uncertainty)


def _no_cells_reason(fraction: float) -> str:
    if fraction < MIN_CELL_FRACTION:
        return "almost no cells were found to measure"
    return "no background between the cells was found"


@dataclass(frozen=True)
class ScaleCheck:
    """An image's cell scale against the training photographs', and the resampling it needs.

    ``field_size_px`` is the cells' size once the image's short side is brought to
    the training field (``ScaleSpec.field_px``); ``ratio`` compares it with the
    training median (1.8: cells look 1.8 times larger). ``resampled_by`` is 1.0
    within the training range; above 1 the cells are enlarged (a smaller field).
    """

    size_px: float
    field_size_px: float
    ratio: float
    uncertainty: float | None
    resampled_by: float

    @property
    def in_training_range(self) -> bool:
        return self.resampled_by == 1.0


UNMEASURABLE_FIX = (
    "photograph a thin area of the smear where the red cells lie side by side, in focus, "
    "with the 100x objective"
)
TOO_SMALL_FIX = (
    "use the 100x objective and the camera's full resolution, and do not zoom out "
    "or shrink the image"
)
TOO_LARGE_FIX = "use the 100x objective (not a higher magnification) and do not crop or zoom in"


def check_scale(image: Image.Image, spec: ScaleSpec) -> ScaleCheck:
    """Measure ``image``'s cells against ``spec``; raise CaptureError when it cannot be used."""
    if min(image.size) < MIN_SIDE:
        reason = (
            f"the image ({image.width}x{image.height} pixels) is too small to measure its cells"
        )
        raise CaptureError(reason, UNMEASURABLE_FIX, code="scale_unmeasurable")
    measured = measure_cells(image)
    if measured.size_px is None:
        reason = f"the size of the cells could not be measured ({measured.reason})"
        raise CaptureError(reason, UNMEASURABLE_FIX, code="scale_unmeasurable")
    field_size = measured.size_px * spec.field_px / min(image.size)
    target = min(max(field_size, spec.low_px), spec.high_px)
    resampled_by = target / field_size
    ratio = field_size / spec.reference_px
    if resampled_by > spec.max_resample:
        reason = f"cells look {1 / ratio:.1f}x smaller than in the training images"
        raise CaptureError(reason, TOO_SMALL_FIX, code="cells_too_small")
    if resampled_by < 1 / spec.max_resample:
        reason = f"cells look {ratio:.1f}x larger than in the training images"
        raise CaptureError(reason, TOO_LARGE_FIX, code="cells_too_large")
    return ScaleCheck(
        size_px=measured.size_px,
        field_size_px=field_size,
        ratio=ratio,
        uncertainty=measured.uncertainty,
        resampled_by=resampled_by,
    )
