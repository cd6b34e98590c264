"""Images for tests and benchmarks: synthesised in memory, or read from the data set.

Nothing here writes an image anywhere; data-set images are only ever read.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_FOLDERS = ("Benign", "Early", "Pre", "Pro")


class ImageFactory:
    """Synthesises test images in memory (never data-set images)."""

    @staticmethod
    def smear(size: tuple[int, int] = (96, 96), seed: int = 0) -> Image.Image:
        """A smear-like RGB field: red cells with pale centres, one violet leukocyte, noise.

        The cells span the training photographs' scale whatever ``size`` is (24 px
        across per 224 px of the short side), so the scale check accepts it.
        """
        if size[0] * size[1] <= CACHED_PIXELS:
            return Image.fromarray(_cached_smear(size, seed).copy())
        return Image.fromarray(_draw_smear(size, seed))

    @staticmethod
    def cell_field(
        leukocytes: list[tuple[float, float, float]],
        size: int = 224,
        zoom: float = 1.0,
        seed: int = 0,
    ) -> Image.Image:
        """A square smear field of red cells 24 px across at ``zoom`` 1, with violet
        leukocytes at (x, y, diameter in red cells), x and y as fractions of the side."""
        rng = np.random.default_rng(seed)
        side = round(size * zoom)
        d = 24 * zoom
        yy, xx = np.mgrid[0:side, 0:side]
        img = np.empty((side, side, 3), np.float32)
        img[:] = (236, 222, 226)
        for cy in np.arange(d / 2, side, 1.25 * d):
            for cx in np.arange(d / 2, side, 1.25 * d):
                y, x = cy + rng.uniform(-0.1, 0.1) * d, cx + rng.uniform(-0.1, 0.1) * d
                r2 = (yy - y) ** 2 + (xx - x) ** 2
                img[r2 < (d / 2) ** 2] = (205, 130, 140)
                img[r2 < (d / 5) ** 2] = (222, 170, 178)
        for fx, fy, diameter in leukocytes:
            r2 = (yy - fy * side) ** 2 + (xx - fx * side) ** 2
            img[r2 < (diameter * d / 2) ** 2] = (120, 70, 150)
        noisy = img + rng.normal(0, 4, img.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    @staticmethod
    def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **save_args)
        return buffer.getvalue()

    def make(
        self,
        fmt: str = "PNG",
        size: tuple[int, int] = (96, 96),
        mode: str = "RGB",
        seed: int = 0,
        **save_args: object,
    ) -> bytes:
        return self.encode(self.smear(size, seed).convert(mode), fmt, **save_args)


# Fields up to a megapixel are drawn once a process: many tests ask for the same ones.
CACHED_PIXELS = 1024 * 1024


def _draw_smear(size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    d = 24 * min(w, h) / 224
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[:] = (236, 222, 226)
    step = 1.25 * d
    for cy in np.arange(d / 2, h, step):
        for cx in np.arange(d / 2, w, step):
            y, x = cy + rng.uniform(-0.1, 0.1) * d, cx + rng.uniform(-0.1, 0.1) * d
            r2 = (yy - y) ** 2 + (xx - x) ** 2
            img[r2 < (d / 2) ** 2] = (205, 130, 140)
            img[r2 < (d / 5) ** 2] = (222, 170, 178)
    r2 = (yy - h / 2) ** 2 + (xx - w / 2) ** 2
    img[r2 < d**2] = (120, 70, 150)
    noisy = img + rng.normal(0, 4, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _cached_smear(size: tuple[int, int], seed: int) -> np.ndarray:
    return _draw_smear(size, seed)


def smear_images(data_dir: str | Path, n: int) -> list[bytes]:
    """``n`` original smear JPEGs, taken round-robin over the class folders (sorted names)."""
    root = Path(data_dir)
    root = root / "original" if (root / "original").is_dir() else root
    folders = [sorted((root / c).glob("*.jpg")) for c in CLASS_FOLDERS]
    folders = [f for f in folders if f]
    if not folders:
        raise FileNotFoundError(f"no original/<class>/*.jpg under {data_dir}")
    picked = [folders[i % len(folders)][i // len(folders)] for i in range(n)]
    return [p.read_bytes() for p in picked]


def synth_images(n: int, size: int = 224) -> list[bytes]:
    """``n`` distinct smear-like JPEGs (red cells, one leukocyte) at the training scale."""
    factory = ImageFactory()
    return [factory.make("JPEG", size=(size, size), seed=seed, quality=90) for seed in range(n)]
