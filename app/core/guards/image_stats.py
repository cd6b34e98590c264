"""The guard's image statistics: colour and texture of a smear photograph, as numbers.

OpenCV and NumPy, image by image: the inference service works them out on the image
threads while the model pass runs (``app.core.parallel.start``). One pass per statistic
over contiguous channel planes, sums in float64 (``tests/unit/test_image_ops_equivalence``
pins them to the NumPy code they replaced).
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from app.core.imaging import pixels, unit_floats
from app.core.preprocessing import to_model_input
from app.core.ranks import median, quantile
from app.core.scale import flattening

# One size for every model (the data set's own): a smaller one blurs away the magnification.
STATS_SIZE = 224
# Brightness the background is brought to before the statistics (the training smears' own).
BACKGROUND_LEVEL = 0.9
# Pixel offsets for the texture-scale profile (magnification shows up here); none finer
# than 4 px, where a camera's noise and focus move the statistics (docs/decisions.md).
TEXTURE_OFFSETS = (4, 8, 16)
_EPS = 1e-3

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def image_statistics(x: np.ndarray, offsets: tuple[int, ...] = TEXTURE_OFFSETS) -> np.ndarray:
    """Colour and texture statistics of one RGB float image in [0, 1], shape (H, W, 3).

    Means, spreads and correlations of the channels; opponent-colour means of the
    whole picture and of its darkest tenth (the stained nuclei); stained, white and
    black fractions; and the texture-scale profile (mean grey difference at growing
    pixel offsets, relative to the grey spread). Spreads are logged so the statistics
    are closer to Gaussian.
    """
    red, green, blue = cv2.split(np.ascontiguousarray(x, dtype=np.float32))
    return _statistics((red, green, blue), offsets)


def _statistics(planes: Planes, offsets: tuple[int, ...] = TEXTURE_OFFSETS) -> np.ndarray:
    red, green, blue = planes
    n = red.size
    stacked = cv2.merge(planes)
    mean_, std_ = cv2.meanStdDev(stacked)
    mean, std = mean_.ravel(), std_.ravel()
    corr = [
        (cv2.sumElems(cv2.multiply(planes[i], planes[j]))[0] / n - mean[i] * mean[j])
        / ((std[i] + _EPS) * (std[j] + _EPS))
        for i, j in ((0, 1), (0, 2), (1, 2))
    ]
    grey = (red + green + blue) / np.float32(3)
    dark = (grey <= quantile(grey, 0.1)).view(np.uint8)
    dark_mean = cv2.mean(stacked, mask=dark)
    chroma = cv2.subtract(cv2.max(cv2.max(red, green), blue), cv2.min(cv2.min(red, green), blue))
    g_mean, g_std_ = cv2.meanStdDev(grey)
    g_std = float(g_std_[0, 0]) + _EPS
    texture = []
    for d in offsets:
        down = cv2.norm(grey[d:, :], grey[:-d, :], cv2.NORM_L1) / grey[d:, :].size
        across = cv2.norm(grey[:, d:], grey[:, :-d], cv2.NORM_L1) / grey[:, d:].size
        texture.append(np.log((down + across) / 2 / g_std + _EPS))
    return np.array(
        [
            *mean,
            *np.log(std + _EPS),
            *corr,
            mean[0] - mean[1],
            (mean[0] + mean[1]) / 2 - mean[2],
            dark_mean[0] - dark_mean[1],
            (dark_mean[0] + dark_mean[1]) / 2 - dark_mean[2],
            np.log(cv2.sumElems(chroma)[0] / n + _EPS),
            np.count_nonzero(chroma > 0.15) / n,
            np.log(np.count_nonzero(grey > 0.92) / n + _EPS),
            np.log(np.count_nonzero(grey < 0.15) / n + _EPS),
            np.log(g_std),
            *texture,
        ],
        dtype=np.float64,
    )


def _balanced_planes(x: np.ndarray | Planes) -> Planes:
    planes = (
        cv2.split(np.ascontiguousarray(x, dtype=np.float32)) if isinstance(x, np.ndarray) else x
    )
    lum = (planes[0] + planes[1] + planes[2]) / np.float32(3)
    flatten = flattening(lum)
    ratio = lum * flatten
    # Indices, not a mask: a quarter of the pixels taken four times by a mask cost 4x more.
    bright = np.flatnonzero(ratio >= quantile(ratio, 0.75))
    out = []
    for plane in planes:
        flat = plane * flatten
        # The bright pixels' flattened values, taken from the flattened plane.
        background = max(median(flat.take(bright)), 1e-3)
        # Two float32 roundings, as before: a pixel at a threshold stays on its side.
        flat *= np.float32(BACKGROUND_LEVEL) / np.float32(background)
        # Nothing is negative: only the top needs clipping.
        out.append(cv2.threshold(flat, 1.0, 1.0, cv2.THRESH_TRUNC, dst=flat)[1])
    return out[0], out[1], out[2]


def balanced(x: np.ndarray) -> np.ndarray:
    """The image with its illumination made even and its background a neutral white.

    Vignetting and the camera's white balance are capture conditions, not signs of a
    foreign image; the colours of the cells against their background still are.
    """
    return cv2.merge(_balanced_planes(x))


def field_statistics(image: Image.Image, offsets: tuple[int, ...] = TEXTURE_OFFSETS) -> np.ndarray:
    """``image_statistics`` of a PIL image at the fixed STATS_SIZE, balanced first."""
    if image.mode == "RGB" and image.size == (STATS_SIZE, STATS_SIZE):
        # Already at the size: the 8-bit planes scaled as to_model_input scales them.
        planes = [unit_floats(p) for p in cv2.split(pixels(image))]
        return _statistics(_balanced_planes((planes[0], planes[1], planes[2])), offsets)
    return _statistics(_balanced_planes(to_model_input(image, STATS_SIZE)), offsets)
