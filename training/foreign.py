"""A deterministic set of foreign images the OOD guard must flag.

Synthetic kinds need nothing; the recoloured, rescaled and single-cell kinds are
made from real smears passed in by the caller (the test split, so the guard was
not fitted on them). Every image is returned as an RGB PIL image, as an upload
would be after ``app.core.preprocessing.load_image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from app.core.preprocessing import load_image

SIZE = 224
SYNTHETIC_KINDS = ("noise", "solid", "text", "gradient", "checkerboard", "shapes")
SMEAR_KINDS = ("recoloured", "zoomed_in", "zoomed_out", "single_cell")
KINDS = SYNTHETIC_KINDS + SMEAR_KINDS
_WORDS = (
    "invoice total due",
    "hello world",
    "The quick brown fox",
    "Lorem ipsum dolor",
    "meeting notes 10:30",
    "ERROR 404",
    "blood smear?",
    "Q3 revenue +12%",
)


@dataclass(frozen=True)
class ForeignImage:
    kind: str
    name: str
    image: Image.Image


def _rgb(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="RGB")


def noise(rng: np.random.Generator) -> list[ForeignImage]:
    out = []
    for i in range(4):
        uniform = rng.integers(0, 256, (SIZE, SIZE, 3))
        out.append(ForeignImage("noise", f"uniform_{i}", _rgb(uniform)))
        gauss = rng.normal(rng.uniform(60, 200), rng.uniform(20, 60), (SIZE, SIZE, 3))
        out.append(ForeignImage("noise", f"gaussian_{i}", _rgb(gauss)))
        sp = np.where(rng.random((SIZE, SIZE, 1)) < 0.5, 0, 255) * np.ones((1, 1, 3))
        out.append(ForeignImage("noise", f"salt_pepper_{i}", _rgb(sp)))
        # Smooth blobs: low-frequency noise upsampled, the closest noise gets to a photo.
        small = rng.integers(0, 256, (8 + 4 * i, 8 + 4 * i, 3)).astype(np.uint8)
        blobs = Image.fromarray(small, "RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        out.append(ForeignImage("noise", f"low_frequency_{i}", blobs))
    return out


def solid(rng: np.random.Generator) -> list[ForeignImage]:
    colours: list[tuple[int, ...]] = [
        (0, 0, 0),
        (255, 255, 255),
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (0, 255, 255),
        (255, 0, 255),
        (255, 255, 0),
        (128, 128, 128),
        (64, 64, 64),
        (200, 200, 200),
    ]
    colours += [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(5)]
    return [
        ForeignImage("solid", f"rgb_{r}_{g}_{b}", Image.new("RGB", (SIZE, SIZE), (r, g, b)))
        for r, g, b in colours
    ]


def text(rng: np.random.Generator) -> list[ForeignImage]:
    out = []
    for i in range(12):
        w, h = ((SIZE, SIZE), (320, 200), (200, 320))[i % 3]
        dark_on_light = i % 4 != 3
        bg = (255, 255, 255) if i % 2 == 0 else tuple(int(v) for v in rng.integers(180, 256, 3))
        fg = (0, 0, 0) if i % 3 else tuple(int(v) for v in rng.integers(0, 90, 3))
        if not dark_on_light:
            bg, fg = fg, bg
        image = Image.new("RGB", (w, h), bg)
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=int(rng.integers(14, 30)))
        for line in range(int(rng.integers(3, 8))):
            words = _WORDS[int(rng.integers(len(_WORDS)))]
            draw.text((8, 8 + line * (h // 8)), words, fill=fg, font=font)
        out.append(ForeignImage("text", f"text_{i}", image))
    return out


def gradient(rng: np.random.Generator) -> list[ForeignImage]:
    out = []
    t = np.linspace(0, 1, SIZE)
    for i in range(8):
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = t[None, :, None] if i % 2 == 0 else (t[:, None, None] + t[None, :, None]) / 2
        ramp = np.broadcast_to(ramp, (SIZE, SIZE, 1))
        out.append(ForeignImage("gradient", f"gradient_{i}", _rgb(a + (b - a) * ramp)))
    return out


def checkerboard(rng: np.random.Generator) -> list[ForeignImage]:
    out = []
    for i, cell in enumerate((4, 8, 14, 28, 56, 7, 16, 32)):
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        mask = ((yy // cell + xx // cell) % 2).astype(bool)[..., None]
        a, b = (
            ((0, 0, 0), (255, 255, 255))
            if i < 4
            else (rng.integers(0, 256, 3), rng.integers(0, 256, 3))
        )
        out.append(
            ForeignImage(
                "checkerboard", f"checker_{cell}", _rgb(np.where(mask, np.array(a), np.array(b)))
            )
        )
    return out


def shapes(rng: np.random.Generator) -> list[ForeignImage]:
    out = []
    for i in range(8):
        image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 12))):
            x0, y0 = (int(v) for v in rng.integers(0, SIZE - 20, 2))
            x1, y1 = x0 + int(rng.integers(15, 120)), y0 + int(rng.integers(15, 120))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        out.append(ForeignImage("shapes", f"shapes_{i}", image))
    return out


def rotate_hue(image: Image.Image, degrees: float) -> Image.Image:
    """Rotate every pixel's hue by ``degrees`` (HSV), keeping saturation and value."""
    hsv = np.asarray(image.convert("HSV"), dtype=np.int32)
    hsv[..., 0] = (hsv[..., 0] + round(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")


def recoloured(smears: Sequence[Image.Image]) -> list[ForeignImage]:
    out = []
    perms = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    for i, smear in enumerate(smears):
        a = np.asarray(smear)
        for deg in (90, 180, 270):
            out.append(ForeignImage("recoloured", f"smear{i}_hue{deg}", rotate_hue(smear, deg)))
        for p in perms:
            order = "".join("RGB"[c] for c in p)
            out.append(
                ForeignImage("recoloured", f"smear{i}_channels{order}", _rgb(a[..., list(p)]))
            )
        out.append(ForeignImage("recoloured", f"smear{i}_inverted", _rgb(255 - a.astype(int))))
    return out


def zoomed_in(smears: Sequence[Image.Image], factor: int = 3) -> list[ForeignImage]:
    """The centre 1/factor of a smear upscaled: a higher magnification than the data set's."""
    out = []
    for i, smear in enumerate(smears):
        w, h = smear.size
        box = (
            (w - w // factor) // 2,
            (h - h // factor) // 2,
            (w + w // factor) // 2,
            (h + h // factor) // 2,
        )
        out.append(
            ForeignImage(
                "zoomed_in",
                f"smear{i}_x{factor}",
                smear.crop(box).resize((SIZE, SIZE), Image.Resampling.BICUBIC),
            )
        )
    return out


def zoomed_out(smears: Sequence[Image.Image], tiles: int = 3) -> list[ForeignImage]:
    """A tiles x tiles mosaic of smears shrunk to one image: a lower magnification."""
    out = []
    n = len(smears)
    for i in range(n):
        mosaic = Image.new("RGB", (SIZE * tiles, SIZE * tiles))
        for t in range(tiles * tiles):
            mosaic.paste(
                smears[(i + t) % n].resize((SIZE, SIZE)), ((t % tiles) * SIZE, (t // tiles) * SIZE)
            )
        out.append(
            ForeignImage(
                "zoomed_out",
                f"mosaic{i}_{tiles}x{tiles}",
                mosaic.resize((SIZE, SIZE), Image.Resampling.BILINEAR),
            )
        )
    return out


def cell_box(smear: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (with a margin) of the largest stained (purple) blob: one white cell."""
    a = np.asarray(smear, dtype=np.float32) / 255.0
    purple = ((a[..., 0] + a[..., 2]) / 2 - a[..., 1] > 0.12) & (a.mean(axis=2) < 0.7)
    labels, n = ndimage.label(ndimage.binary_opening(purple, iterations=2))
    if n == 0:
        w, h = smear.size
        return w // 3, h // 3, 2 * w // 3, 2 * h // 3
    sizes = ndimage.sum(purple, labels, range(1, n + 1))
    ys, xs = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    cy, cx = (ys.start + ys.stop) // 2, (xs.start + xs.stop) // 2
    half = max(ys.stop - ys.start, xs.stop - xs.start) // 2 + 6
    w, h = smear.size
    return max(cx - half, 0), max(cy - half, 0), min(cx + half, w), min(cy + half, h)


def single_cell(smears: Sequence[Image.Image]) -> list[ForeignImage]:
    return [
        ForeignImage(
            "single_cell",
            f"smear{i}_cell",
            smear.crop(cell_box(smear)).resize((SIZE, SIZE), Image.Resampling.BICUBIC),
        )
        for i, smear in enumerate(smears)
    ]


def foreign_set(smear_paths: Sequence[str | Path] = (), seed: int = 0) -> list[ForeignImage]:
    """The whole foreign set; kinds built from smears appear only when paths are given.

    With 12 or more smear paths it holds 68 synthetic and 72 smear-derived images.
    """
    rng = np.random.default_rng(seed)
    images = noise(rng) + solid(rng) + text(rng) + gradient(rng) + checkerboard(rng) + shapes(rng)
    smears = [load_image(p) for p in list(smear_paths)[:12]]
    if smears:
        # Four smears x nine recolourings, so that kind does not swamp the others.
        images += (
            recoloured(smears[:4]) + zoomed_in(smears) + zoomed_out(smears) + single_cell(smears)
        )
    return images
