"""Fixed, deterministic perturbations of model inputs for shortcut and robustness checks."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from training.augment import SCALE_BAR_BOX


def mask_scale_bar(x: np.ndarray) -> np.ndarray:
    """Paint the lower-right scale-bar corner with the mean colour of the image above it."""
    out = x.copy()
    h, w = x.shape[:2]
    y0, x0 = int(h * SCALE_BAR_BOX[1]), int(w * SCALE_BAR_BOX[0])
    out[y0:, x0:] = x[:y0].reshape(-1, 3).mean(axis=0)
    return out


def stain_shift(x: np.ndarray) -> np.ndarray:
    """A fixed stain/colour shift: warmer tint, less saturation, a little darker."""
    grey = x.mean(axis=2, keepdims=True)
    out = grey + 0.75 * (x - grey)  # desaturate
    out = out * np.array([1.08, 0.97, 0.90], dtype=np.float32)  # towards pink/yellow
    out = 0.92 * out + 0.02
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _via_pil(x: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    image = Image.fromarray(np.round(x * 255).astype(np.uint8))
    return np.asarray(fn(image), dtype=np.float32) / 255.0


def blur(x: np.ndarray) -> np.ndarray:
    """Gaussian blur, radius 1.5 px: a slightly defocused photograph."""
    return _via_pil(x, lambda im: im.filter(ImageFilter.GaussianBlur(1.5)))


def jpeg(x: np.ndarray, quality: int = 30) -> np.ndarray:
    """Recompression at JPEG quality 30."""

    def recompress(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    return _via_pil(x, recompress)


def rescale(x: np.ndarray, factor: float = 0.8) -> np.ndarray:
    """Another magnification: zoom out to ``factor`` and pad with the edge colour."""
    h, w = x.shape[:2]
    nh, nw = int(h * factor), int(w * factor)

    def zoom_out(im: Image.Image) -> Image.Image:
        small = im.resize((nw, nh), Image.Resampling.BILINEAR)
        fill = tuple(int(v) for v in np.asarray(im).reshape(-1, 3).mean(axis=0))
        canvas = Image.new("RGB", (w, h), fill)
        canvas.paste(small, ((w - nw) // 2, (h - nh) // 2))
        return canvas

    return _via_pil(x, zoom_out)


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "scale_bar_masked": mask_scale_bar,
    "stain_shift": stain_shift,
    "blur": blur,
    "jpeg_q30": jpeg,
    "rescaled_0.8": rescale,
}
