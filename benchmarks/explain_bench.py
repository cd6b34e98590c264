"""Median milliseconds of segmentation and Grad-CAM per request, per model, on real images.

    python -m benchmarks.explain_bench [--models-dir DIR] [--data-dir DIR] [--images 40]

Defaults: $MODELS_DIR or <root>/models; $ALL_DATA_DIR. Each image is also timed
upscaled to 4000x3000 to show the cost of a large phone photograph.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.explanation.gradcam import GradCam, overlay_png
from app.core.explanation.segmentation import outline_png, segment
from app.core.model_files import model_names
from app.core.model_store import load_model
from app.core.preprocessing import load_image, to_model_input
from tests.support.models import data_root, served_models_dir

LARGE = (4000, 3000)


def _images(data_dir: Path, n: int) -> list[Image.Image]:
    root = data_dir / "original" if (data_dir / "original").is_dir() else data_dir
    files = sorted(root.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no .jpg images under {root}")
    step = max(1, len(files) // n)
    return [load_image(p) for p in files[::step][:n]]


def _median_ms(fn: Callable[[Image.Image], object], images: list[Image.Image]) -> float:
    times = []
    for image in images:
        start = time.perf_counter()
        fn(image)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=served_models_dir())
    parser.add_argument("--data-dir", type=Path, default=data_root())
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("pass --data-dir or set ALL_DATA_DIR")
    names = model_names(args.models_dir)
    if not names:
        parser.error(f"no models in {args.models_dir}")
    images = _images(args.data_dir, args.images)
    large = [images[0].resize(LARGE)] * 5
    print(
        f"{len(images)} images {images[0].size[0]}x{images[0].size[1]} from {args.data_dir}; "
        f"models from {args.models_dir}; median ms"
    )

    seg = _median_ms(segment, images)
    outline = _median_ms(lambda im: outline_png(im, segment(im)), images) - seg
    seg_large = _median_ms(segment, large)
    outline_large = _median_ms(lambda im: outline_png(im, segment(im)), large) - seg_large
    print(
        f"segment {seg:7.1f}   outline_png {outline:6.1f}   "
        f"({LARGE[0]}x{LARGE[1]}: segment {seg_large:.1f}, outline_png {outline_large:.1f})"
    )

    header = f"{'model':<11}{'heatmap':>9}{'overlay':>9}{'seg+cam total':>15}{'large total':>13}"
    print(header)
    for name in names:
        cam = GradCam(load_model(args.models_dir, name))

        def heat(im: Image.Image, cam: GradCam = cam) -> tuple[np.ndarray, int, np.ndarray]:
            return cam.heatmap_top(to_model_input(im, cam.input_size))

        heat_ms = _median_ms(heat, images)
        heatmap = heat(images[0])[0]

        def overlaid(im: Image.Image, heatmap: np.ndarray = heatmap) -> bytes:
            return overlay_png(im, heatmap)

        overlay = _median_ms(overlaid, images)
        large_total = (
            _median_ms(heat, large) + _median_ms(overlaid, large) + seg_large + outline_large
        )
        total = seg + outline + heat_ms + overlay
        print(f"{name:<11}{heat_ms:9.1f}{overlay:9.1f}{total:15.1f}{large_total:13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
