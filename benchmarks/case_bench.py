"""A 50-field case end to end, against the bare batched model, in the same run.

    python -m benchmarks.case_bench [--models-dir DIR] [--data-dir DIR] [--fields 50]
                                    [--rounds 5] [--out benchmarks/CASES.md]

The case is the data set's own 224 px JPEGs, posted as one multipart request to
``POST /api/v1/cases`` through Flask's test client (multipart parsing, classification,
the guard, cell crops, thumbnails, the SQLite transaction), per served model. The bare
model is ``LoadedModel.logits`` on the same images already preprocessed, in one batch.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app import create_app
from app.core.model_files import model_names
from app.core.preprocessing import load_image, prepare
from app.core.service import InferenceService
from tests.support.accounts import admin_client
from tests.support.images import smear_images
from tests.support.models import ROOT, data_root, served_models_dir
from tests.support.server import multipart

TARGET_SECONDS = 1.5
TARGET_RATIO = 0.5


def case_seconds(client: object, files: list[bytes], model: str) -> tuple[float, dict[str, float]]:
    """Wall seconds of one case request, and the median per-field step times it recorded."""
    parts = [("images", (f"field-{i}.jpg", data)) for i, data in enumerate(files)]
    body, content_type = multipart({"reference": "BENCH", "model": model}, parts)
    start = time.perf_counter()
    response = client.post("/api/v1/cases", data=body, content_type=content_type)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - start
    if response.status_code != 201:
        raise SystemExit(
            f"case request failed: {response.status_code} {response.get_data()[:300]!r}"
        )
    images = response.get_json()["images"]
    steps = {
        step: statistics.median(i["timings_ms"][step] or 0.0 for i in images if i["timings_ms"])
        for step in ("decode_ms", "preprocess_ms", "model_ms", "ood_ms")
    }
    return seconds, steps


def bare_seconds(service: InferenceService, files: list[bytes], model: str) -> float:
    """Seconds of the model alone on the case's images, preprocessed, in one batch."""
    loaded = service.served(model).model
    x = np.stack([prepare(load_image(d), loaded.input_size, loaded.card.scale).x for d in files])
    loaded.logits(x)  # traced for this batch size
    start = time.perf_counter()
    loaded.logits(x)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=served_models_dir())
    parser.add_argument("--data-dir", type=Path, default=data_root())
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "CASES.md")
    args = parser.parse_args()
    if args.data_dir is None:
        parser.error("pass --data-dir or set ALL_DATA_DIR")
    files = smear_images(args.data_dir, args.fields)
    service = InferenceService(args.models_dir).load()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(
            {
                "APP_ENV": "testing",
                "MODELS_DIR": str(args.models_dir),
                "SECRET_KEY": "bench",
                "DATABASE_URL": f"sqlite:///{Path(scratch) / 'cases.sqlite3'}",
                "IMAGE_STORE": str(Path(scratch) / "images"),
            },
            inference=service,
        )
        client = admin_client(app)
        for name in model_names(args.models_dir):
            case_seconds(client, files[:4], name)  # warm: traces the batch shapes
            runs = [case_seconds(client, files, name) for _ in range(args.rounds)]
            bare = statistics.median(bare_seconds(service, files, name) for _ in range(args.rounds))
            seconds = statistics.median(r[0] for r in runs)
            steps = runs[len(runs) // 2][1]
            rows.append((name, seconds, bare, steps))
            print(f"[{name}] case {seconds:.2f} s, bare batch {bare * 1000:.0f} ms", flush=True)
    args.out.write_text(_markdown(rows, args))
    print(f"wrote {args.out}")
    return 0


def _markdown(
    rows: list[tuple[str, float, float, dict[str, float]]], args: argparse.Namespace
) -> str:
    n = args.fields
    lines = [
        "# Case benchmark",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m benchmarks.case_bench "
        f"--fields {n} --rounds {args.rounds}` on {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}.",
        "",
        f"One case of {n} of the data set's 224 px JPEGs posted to `POST /api/v1/cases` through "
        "Flask's test client (multipart parsing, the scale check, one batched model pass with "
        "the guard's features, the guard's image statistics, cell crops and thumbnails, the "
        "SQLite transaction); the median of the rounds. Bare model: `LoadedModel.logits` on "
        "the same images, preprocessed, in one batch.",
        "",
        "| model | case s | case images/s | bare model images/s | case / bare | decode ms | "
        "preprocess ms | model ms | guard ms | case <= 1.5 s | case >= half the bare rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seconds, bare, steps in rows:
        case_rate, bare_rate = n / seconds, n / bare
        lines.append(
            f"| {name} | {seconds:.2f} | {case_rate:.0f} | {bare_rate:.0f} | "
            f"{case_rate / bare_rate:.2f} | {steps['decode_ms']:.1f} | "
            f"{steps['preprocess_ms']:.1f} | {steps['model_ms']:.1f} | {steps['ood_ms']:.1f} | "
            f"{'yes' if seconds <= TARGET_SECONDS else '**no**'} | "
            f"{'yes' if case_rate / bare_rate >= TARGET_RATIO else '**no**'} |"
        )
    lines += [
        "",
        "Per-field step times are medians of what the app recorded for each field "
        "(`timings_ms`); the rest of a case's time goes to cell segmentation and crops, "
        "thumbnails, multipart parsing and the database.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
