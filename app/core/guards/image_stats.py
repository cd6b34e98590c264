"""The guard's image statistics: colour and texture of a smear photograph, as numbers.

Plain NumPy and Pillow, image by image: the inference service works them out on the
image threads while the model pass runs (``app.core.parallel.start``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from app.core.preprocessing import to_model_input
from app.core.scale import illumination

# One size for every model (the data set's own): a smaller one blurs away the magnification.
STATS_SIZE = 224
# Brightness the background is brought to before the statistics (the training smears' own).
BACKGROUND_LEVEL = 0.9
# Pixel offsets for the texture-scale profile (magnification shows up here).
_OFFSETS = (1, 2, 4, 8, 16)


def image_statistics(x: np.ndarray) -> np.ndarray:
    """Colour and texture statistics of one RGB float image in [0, 1], shape (H, W, 3).

    Means, spreads and correlations of the channels; opponent-colour means of the
    whole picture and of its darkest tenth (the stained nuclei); stained, white and
    black fractions; and the texture-scale profile (mean grey difference at growing
    pixel offsets, relative to the grey spread). Spreads are logged so the statistics
    are closer to Gaussian.
    """
    eps = 1e-3
    # Contiguous channel planes: reductions over them are several times faster than over (H, W, 3).
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
    for d in _OFFSETS:
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


def _quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) by a partial sort, which is faster."""
    flat = values.ravel()
    position = q * (flat.size - 1)
    low = int(position)
    high = min(low + 1, flat.size - 1)
    part = np.partition(flat, (low, high))
    return float(part[low] + (part[high] - part[low]) * (position - low))


def balanced(x: np.ndarray) -> np.ndarray:
    """The image with its illumination made even and its background a neutral white.

    Vignetting and the camera's white balance are capture conditions, not signs of a
    foreign image; the colours of the cells against their background still are.
    """
    planes = np.moveaxis(np.asarray(x, dtype=np.float32), -1, 0)
    lum = (planes[0] + planes[1] + planes[2]) / np.float32(3)
    flatten = 1 / illumination(lum)
    flat = planes * flatten
    bright = lum * flatten >= _quantile(lum * flatten, 0.75)
    background = np.maximum([np.median(plane[bright]) for plane in flat], 1e-3)
    flat *= (BACKGROUND_LEVEL / background).astype(np.float32)[:, None, None]
    return np.clip(np.moveaxis(flat, 0, -1), 0.0, 1.0)


def field_statistics(image: Image.Image) -> np.ndarray:
    """``image_statistics`` of a PIL image at the fixed STATS_SIZE, balanced first."""
    return image_statistics(balanced(to_model_input(image, STATS_SIZE)))
