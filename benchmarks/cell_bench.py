"""The cell path's cost per 224 px field, step by step, on one thread, against its target.

    python -m benchmarks.cell_bench [--models-dir DIR] [--data-dir DIR] [--model cell_lenet]
                                    [--fields 50] [--rounds 5] [--out benchmarks/CELLS.md]

Steps: decoding, the scale measure, finding the cells (resampling, segmentation,
exclusions), the stain and the crops, the cell model on a case's cells in one batch
(its share per field), the pooling and the guard's image statistics. The target: all
of it at most 25 ms a field on one core (issue 22).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.core.cells.crops import read_field
from app.core.cells.detect import find_cells, leukocyte_mask, normalise_scale
from app.core.cells.model import load_cell_model
from app.core.guards.image_stats import field_statistics
from app.core.preprocessing import load_image
from app.core.scale import measure_cells
from tests.support.images import smear_images
from tests.support.models import ROOT, data_root, served_models_dir

TARGET_MS = 25.0


def best_ms(work: Callable[[], object], n: int, rounds: int) -> float:
    """The fastest of ``rounds`` runs of ``work``, in ms per field."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best * 1000 / n


def steps_ms(files: list[bytes], models_dir: Path, model: str, rounds: int) -> dict[str, float]:
    loaded = load_cell_model(models_dir, model)
    images = [load_image(d) for d in files]
    scales = [measure_cells(i).size_px or 24.0 for i in images]
    normal = [
        np.asarray(normalise_scale(i, s), np.float32) / 255
        for i, s in zip(images, scales, strict=True)
    ]
    fields = [read_field(i, s) for i, s in zip(images, scales, strict=True)]
    crops = np.concatenate([f.crops for f in fields])
    loaded.run(crops[:8])  # traced before timing
    outputs = loaded.run(crops)
    offsets = np.cumsum([0, *(len(f.crops) for f in fields)])

    def pool_all() -> None:
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            loaded.answer(outputs.part(int(a), int(b)))

    n = len(files)
    return {
        "decode": best_ms(lambda: [load_image(d) for d in files], n, rounds),
        "scale measure": best_ms(lambda: [measure_cells(i) for i in images], n, rounds),
        "find the cells": best_ms(
            lambda: [
                find_cells(leukocyte_mask(np.asarray(normalise_scale(i, s), np.float32) / 255))
                for i, s in zip(images, scales, strict=True)
            ],
            n,
            rounds,
        ),
        "stain and crops": best_ms(
            lambda: [read_field(i, s) for i, s in zip(images, scales, strict=True)], n, rounds
        )
        - best_ms(lambda: [find_cells(leukocyte_mask(x)) for x in normal], n, rounds),
        "cell model (batched)": best_ms(lambda: loaded.run(crops), n, rounds),
        "pooling": best_ms(pool_all, n, rounds),
        "guard statistics": best_ms(lambda: [field_statistics(i) for i in images], n, rounds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=served_models_dir())
    parser.add_argument("--data-dir", type=Path, default=data_root())
    parser.add_argument("--model", default="cell_lenet")
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "CELLS.md")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("pass --data-dir or set ALL_DATA_DIR")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    files = smear_images(args.data_dir, args.fields)
    steps = steps_ms(files, args.models_dir, args.model, args.rounds)
    total = sum(steps.values())
    args.out.write_text(_markdown(steps, total, args))
    print(_markdown(steps, total, args))
    return 0


def _markdown(steps: dict[str, float], total: float, args: argparse.Namespace) -> str:
    rows = "\n".join(f"| {name} | {ms:.1f} |" for name, ms in steps.items())
    met = "met" if total <= TARGET_MS else "missed"
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        "# Cell path benchmark\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m benchmarks.cell_bench "
        f"--model {args.model} --fields {args.fields} --rounds {args.rounds}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread "
        f"(TensorFlow intra/inter-op 1), load average {load}. The data set's 224 px JPEGs, "
        "taken round-robin over the classes; best of the rounds, ms per field.\n\n"
        "| step | ms per field |\n|---|---|\n"
        f"{rows}\n| **total** | **{total:.1f}** |\n\n"
        f"Target: the cell path at most {TARGET_MS:.0f} ms a field on one core: {met}.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
