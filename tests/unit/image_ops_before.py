"""Today's per-field image operations, frozen before they moved to OpenCV (issue 25).

Kept only for ``test_image_ops_equivalence``: each function is the code the app ran before
the move (scikit-image, SciPy and NumPy), so the tests can pin the new implementation's
results to these within stated tolerances on any image, synthetic or from the data set.
Constants are imported from the app: the tests pin the algorithms, not the settings.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import rgb2lab
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from app.core.cells.crops import MAX_CELLS, cut
from app.core.cells.detect import (
    DISC_PX,
    MIN_AREA_RBC,
    NORMAL_RBC_PX,
    SEED_DISTANCE_RBC,
    FoundCell,
    _exclusion,
    normalise_scale,
)
from app.core.cells.stain import MAX_OD, MIN_OD, REFERENCE_OD
from app.core.explanation.gallery import CELL_MARGIN, CELL_SIDE, CELL_WORK_SIDE
from app.core.explanation.segmentation import (
    A_FLOOR,
    B_CEILING,
    MIN_OBJECT_FRACTION,
    SEED_DISTANCE_FRACTION,
)
from app.core.guards.image_stats import BACKGROUND_LEVEL, STATS_SIZE
from app.core.preprocessing import to_model_input
from app.core.scale import (
    _BLOCK_DESIGN,
    _GRID_DESIGN,
    _TERMS,
    BLOCKS,
    CLOSE_ENOUGH,
    FIRST_LOOK_SIDE,
    LUMINANCE_WEIGHT,
    MAX_CELL_FRACTION,
    MAX_WORK_SIDE,
    MIN_CELL_FRACTION,
    WORK_SIZE,
)

# --- app/core/imaging.py ----------------------------------------------------------------


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    if image.mode != "RGB":
        image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    factor = int(1 / scale)
    if factor >= 2:
        image = image.reduce(factor)
    return image.resize(size, Image.Resampling.BILINEAR)


def jpeg_bytes(image: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# --- app/core/explanation/segmentation.py ------------------------------------------------


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return np.add.outer(r**2, r**2) <= radius**2


def foreground_mask(rgb: np.ndarray, min_object_px: float | None = None) -> np.ndarray:
    lab = rgb2lab(rgb)
    a, b = lab[..., 1], lab[..., 2]
    threshold = A_FLOOR
    if a.max() > a.min():
        threshold = max(threshold, float(threshold_otsu(a)))
    mask = (a > threshold) & (b < B_CEILING)
    if min(mask.shape) >= 3:
        mask = ndi.binary_opening(mask, _disk(1))
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        smallest = MIN_OBJECT_FRACTION * mask.size if min_object_px is None else min_object_px
        keep = sizes >= max(1.0, smallest)
        keep[0] = False
        mask = keep[labels]
    return mask


def split_cells(mask: np.ndarray, seed_distance_px: float | None = None) -> np.ndarray:
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = ndi.distance_transform_edt(mask)
    if seed_distance_px is None:
        seed_distance_px = SEED_DISTANCE_FRACTION * max(mask.shape)
    min_distance = max(2, round(seed_distance_px))
    components, _ = ndi.label(mask)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return np.asarray(watershed(-distance, markers, mask=mask), dtype=np.int32)


def segment_cells(
    image: Image.Image, work_side: int
) -> tuple[np.ndarray, list[tuple[tuple[int, int, int, int], int, tuple[float, float]]]]:
    """The work mask and each cell's (bbox, area, centroid), as ``segment`` gave them."""
    small = foreground_mask(np.asarray(downscale(image, work_side), dtype=np.float32) / 255.0)
    labels = split_cells(small)
    width, height = image.size
    sx, sy = width / small.shape[1], height / small.shape[0]
    cells = []
    min_area = max(1.0, MIN_OBJECT_FRACTION * small.size)
    for i, found in enumerate(ndi.find_objects(labels), start=1):
        if found is None:
            continue
        ys, xs = np.nonzero(labels[found] == i)
        if len(ys) < min_area:
            continue
        y0, x0 = found[0].start, found[1].start
        bbox = (
            int(x0 * sx),
            int(y0 * sy),
            min(width, int(np.ceil(found[1].stop * sx))),
            min(height, int(np.ceil(found[0].stop * sy))),
        )
        centroid = (
            round(float((xs.mean() + x0 + 0.5) * sx), 1),
            round(float((ys.mean() + y0 + 0.5) * sy), 1),
        )
        cells.append((bbox, int(round(len(ys) * sx * sy)), centroid))
    return small, cells


# --- app/core/cells/detect.py -------------------------------------------------------------


def leukocyte_mask(rgb: np.ndarray) -> np.ndarray:
    return foreground_mask(rgb, min_object_px=MIN_AREA_RBC / 2 * DISC_PX)


def find_cells(mask: np.ndarray) -> list[FoundCell]:
    labels = split_cells(mask, seed_distance_px=SEED_DISTANCE_RBC * NORMAL_RBC_PX)
    height, width = mask.shape
    found = []
    for i, where in enumerate(ndi.find_objects(labels), start=1):
        if where is None:
            continue
        ys, xs = np.nonzero(labels[where] == i)
        y0, x0 = where[0].start, where[1].start
        y1, x1 = where[0].stop, where[1].stop
        area = len(ys) / DISC_PX
        box = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
        centre = (float(xs.mean() + x0 + 0.5), float(ys.mean() + y0 + 0.5))
        fill = len(ys) / ((x1 - x0) * (y1 - y0))
        found.append(
            FoundCell(box, centre, round(area, 3), _exclusion(box, area, fill, width, height))
        )
    return found


# --- app/core/cells/stain.py and crops.py --------------------------------------------------


def white_point(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    background = rgb[~cells] if (~cells).any() else rgb.reshape(-1, 3)
    lum = background.mean(-1)
    bright = background[lum >= np.median(lum)]
    return np.asarray(np.maximum(np.median(bright, axis=0), 1e-3), np.float32)


def normalise_stain(rgb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    white = white_point(rgb, cells)
    od = np.asarray(-np.log(np.clip(rgb / white, np.exp(-MAX_OD), 1.0)), np.float32)
    if cells.any():
        mean = od[cells].mean(axis=0)
        od = od * (REFERENCE_OD / np.maximum(mean, MIN_OD))
    return np.asarray(np.exp(-od), np.float32)


def read_field(
    image: Image.Image, rbc_px: float
) -> tuple[list[FoundCell], list[FoundCell], np.ndarray, np.ndarray, np.ndarray]:
    """Every object, the used ones, the stained crops, the pictures and the mask."""
    normal = normalise_scale(image, rbc_px)
    rgb = np.asarray(normal, np.float32) / 255.0
    mask = leukocyte_mask(rgb)
    found = sorted(find_cells(mask), key=lambda c: -c.area_rbc)
    used = [c for c in found if c.used][:MAX_CELLS]
    stained = normalise_stain(rgb, mask)
    centres = [c.centre for c in used]
    pictures = (cut(rgb, centres) * 255 + 0.5).astype(np.uint8)
    return found, used, cut(stained, centres), pictures, mask


# --- app/core/scale.py --------------------------------------------------------------------


def illumination(lum: np.ndarray) -> np.ndarray:
    h, w = lum.shape
    bh, bw = h // BLOCKS, w // BLOCKS
    if bh < 2 or bw < 2:
        return np.full_like(lum, max(float(np.percentile(lum, 90)), 1e-3))
    blocks = lum[: bh * BLOCKS, : bw * BLOCKS].reshape(BLOCKS, bh, BLOCKS, bw)
    pixels = blocks.transpose(0, 2, 1, 3).reshape(BLOCKS * BLOCKS, -1)
    k = int(0.9 * (pixels.shape[1] - 1))
    tops = np.partition(pixels, k, axis=1)[:, k]
    keep = np.ones(tops.size, bool)
    for _ in range(2):
        coef = np.linalg.lstsq(_BLOCK_DESIGN[keep], tops[keep], rcond=None)[0]
        keep = tops >= (_BLOCK_DESIGN @ coef) * 0.93
        if keep.sum() < 2 * len(_TERMS):
            break
    grid = np.asarray(_GRID_DESIGN @ coef, dtype=np.float32)
    surface = Image.fromarray(grid).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(np.maximum(np.asarray(surface), 1e-3))


def otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
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
    red, green, blue = np.moveaxis(rgb, -1, 0).copy()
    lum = (red + green + blue) * np.float32(1 / 3)
    flatten = 1 / illumination(lum)
    ratio = lum * flatten
    sample = ratio[::2, ::2].ravel()
    k = int(0.75 * (sample.size - 1))
    bright = ratio >= np.partition(sample, k)[k]
    colour = (
        np.stack([red[bright], green[bright], blue[bright]], 1)[::3] * flatten[bright][::3, None]
    )
    background = np.maximum(np.median(colour, axis=0), 1e-3)
    r, g, b = (plane * flatten / c for plane, c in zip((red, green, blue), background, strict=True))
    total = np.maximum(r + g + b, 1e-3)
    chroma = np.maximum(9 * (r * r + g * g + b * b) / (total * total) - 3, 0)
    dev = np.sqrt(chroma + (LUMINANCE_WEIGHT * (1 - total / 3)) ** 2)
    mask = ndi.binary_opening(dev > otsu_threshold(dev))
    labels, n = ndi.label(~mask)
    inside = np.ones(n + 1, bool)
    inside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False
    inside[0] = False
    return np.asarray(mask | inside[labels])


def _relative_error(distance: np.ndarray, mask: np.ndarray, mean: float, parts: int = 4) -> float:
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


def size_measure(rgb: np.ndarray) -> tuple[float | None, float, float | None]:
    mask = cell_mask(rgb)
    fraction = float(mask.mean())
    if not MIN_CELL_FRACTION <= fraction <= MAX_CELL_FRACTION:
        return None, fraction, None
    distance = ndi.distance_transform_cdt(mask, metric="taxicab").astype(np.float32)
    distance += ndi.distance_transform_cdt(mask, metric="chessboard")
    distance *= 0.5
    mean = float(distance[mask].mean())
    return 6.0 * mean - 1.0, fraction, _relative_error(distance, mask, mean)


def _resized(image: Image.Image, scale: float) -> tuple[np.ndarray, float]:
    if scale < 1.0:
        factor = int(1 / scale)
        small = image.reduce(factor) if factor >= 2 else image
        size = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
        image_at = small.resize(size, Image.Resampling.BILINEAR) if small.size != size else small
    elif scale > 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image_at = image.resize(size, Image.Resampling.BILINEAR)
    else:
        image_at = image
    return np.asarray(image_at, dtype=np.float32) / 255.0, image_at.width / image.width


def measure_cells(image: Image.Image) -> tuple[float | None, float, float | None]:
    """(size in the image's pixels or None, cell fraction, uncertainty)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    long_side = max(image.size)
    first, s = _resized(image, min(1.0, FIRST_LOOK_SIDE / long_side))
    size, fraction, uncertainty = size_measure(first)
    if size is not None and not 1 / CLOSE_ENOUGH <= size / WORK_SIZE <= CLOSE_ENOUGH:
        work, s = _resized(image, min(WORK_SIZE / (size / s), MAX_WORK_SIDE / long_side))
        size, fraction, uncertainty = size_measure(work)
    return (None if size is None else size / s), fraction, uncertainty


# --- app/core/guards/image_stats.py --------------------------------------------------------

# The profile these copies were frozen with (the served one is a subset).
OFFSETS = (1, 2, 4, 8, 16)


def _quantile(values: np.ndarray, q: float) -> float:
    flat = values.ravel()
    position = q * (flat.size - 1)
    low = int(position)
    high = min(low + 1, flat.size - 1)
    part = np.partition(flat, (low, high))
    return float(part[low] + (part[high] - part[low]) * (position - low))


def image_statistics(x: np.ndarray) -> np.ndarray:
    eps = 1e-3
    red, green, blue = planes = np.moveaxis(np.asarray(x, dtype=np.float32), -1, 0).copy()
    mean = np.array([p.mean(dtype=np.float64) for p in planes])
    std = np.array([p.std(dtype=np.float64) for p in planes])
    corr = [
        ((planes[i] * planes[j]).mean(dtype=np.float64) - mean[i] * mean[j])
        / ((std[i] + eps) * (std[j] + eps))
        for i, j in ((0, 1), (0, 2), (1, 2))
    ]
    grey = (red + green + blue) / np.float32(3)
    red_green = red - green
    yellow_blue = (red + green) / 2 - blue
    dark = grey <= _quantile(grey, 0.1)
    chroma = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    g_std = float(grey.std(dtype=np.float64)) + eps
    texture = []
    for d in OFFSETS:
        down = np.abs(grey[d:, :] - grey[:-d, :]).mean(dtype=np.float64)
        across = np.abs(grey[:, d:] - grey[:, :-d]).mean(dtype=np.float64)
        texture.append(np.log((down + across) / 2 / g_std + eps))
    return np.array(
        [
            *mean,
            *np.log(std + eps),
            *corr,
            red_green.mean(dtype=np.float64),
            yellow_blue.mean(dtype=np.float64),
            red_green[dark].mean(dtype=np.float64),
            yellow_blue[dark].mean(dtype=np.float64),
            np.log(chroma.mean(dtype=np.float64) + eps),
            (chroma > 0.15).mean(),
            np.log((grey > 0.92).mean() + eps),
            np.log((grey < 0.15).mean() + eps),
            np.log(g_std),
            *texture,
        ],
        dtype=np.float64,
    )


def balanced(x: np.ndarray) -> np.ndarray:
    planes = np.moveaxis(np.asarray(x, dtype=np.float32), -1, 0)
    lum = (planes[0] + planes[1] + planes[2]) / np.float32(3)
    flatten = 1 / illumination(lum)
    flat = planes * flatten
    bright = lum * flatten >= _quantile(lum * flatten, 0.75)
    background = np.maximum([np.median(plane[bright]) for plane in flat], 1e-3)
    flat *= (BACKGROUND_LEVEL / background).astype(np.float32)[:, None, None]
    return np.clip(np.moveaxis(flat, 0, -1), 0.0, 1.0)


def field_statistics(image: Image.Image) -> np.ndarray:
    return image_statistics(balanced(to_model_input(image, STATS_SIZE)))


# --- app/core/explanation/gallery.py -------------------------------------------------------


def thumbnail_jpeg(image: Image.Image, side: int) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    return jpeg_bytes(small)


def cell_crops(field_image: Image.Image, limit: int) -> list[tuple[list[int], bytes]]:
    """Each crop's box (x0, y0, x1, y1) and JPEG, largest cell first."""
    _, found = segment_cells(field_image, CELL_WORK_SIDE)
    cells = sorted(found, key=lambda c: c[1], reverse=True)[:limit]
    rgb = field_image.convert("RGB")
    crops = []
    for (x0, y0, x1, y1), _, _ in cells:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = max(x1 - x0, y1 - y0) * 0.5 * CELL_MARGIN
        left, top, right, bottom = (round(v) for v in (cx - half, cy - half, cx + half, cy + half))
        crop = rgb.crop((left, top, right, bottom))
        crop = crop.resize((CELL_SIDE, CELL_SIDE), Image.Resampling.LANCZOS)
        crops.append(([left, top, right, bottom], jpeg_bytes(crop)))
    return crops
