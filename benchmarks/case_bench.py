"""A 50-field case end to end, against the bare batched model, in the same run.

    python -m benchmarks.case_bench [--models-dir DIR] [--data-dir DIR] [--fields 50]
                                    [--rounds 5] [--out benchmarks/CASES.md]

The case is the data set's own 224 px JPEGs, posted as one multipart request to
``POST /api/v1/cases`` through Flask's test client (multipart parsing, classification,
the guard, cell crops, thumbnails, the SQLite transaction), per served model. The bare
model is ``LoadedModel.logits`` on the same images already preprocessed, in one batch.

It also times each step of a field's own work on one thread (decoding, the scale check,
the guard's image statistics, the thumbnail, the cell crops), which bounds how close the
case can come to the bare model's rate.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from flask import Flask

from app import create_app
from app.core.collector import set_aside_loaded
from app.core.explanation.gallery import cell_crops, thumbnail_jpeg
from app.core.guards.image_stats import field_statistics
from app.core.preprocessing import load_image, prepare
from app.core.service import InferenceService
from tests.support.accounts import admin_client
from tests.support.images import smear_images
from tests.support.models import ROOT, data_root, field_model_names, served_models_dir
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
    loaded = service.field_model(model).model
    x = np.stack([prepare(load_image(d), loaded.input_size, loaded.card.scale).x for d in files])
    loaded.logits(x)  # traced for this batch size
    start = time.perf_counter()
    loaded.logits(x)
    return time.perf_counter() - start


def step_ms(files: list[bytes], service: InferenceService, rounds: int) -> dict[str, float]:
    """Each step of a field's own work, in ms per image on one thread (best of the rounds):
    what a field costs besides the model, whichever model it is."""
    loaded = service.served(service.default_model).model
    images = [load_image(d) for d in files]
    fields = [prepare(i, loaded.input_size, loaded.card.scale).field for i in images]
    steps: dict[str, Callable[[], object]] = {
        "decode": lambda: [load_image(d) for d in files],
        "scale check and model input": lambda: [
            prepare(i, loaded.input_size, loaded.card.scale) for i in images
        ],
        "guard statistics": lambda: [field_statistics(f) for f in fields],
        "thumbnail": lambda: [thumbnail_jpeg(i) for i in images],
        "cell crops": lambda: [cell_crops(f) for f in fields],
    }
    timed = {}
    for name, work in steps.items():
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
        timed[name] = best * 1000 / len(files)
    return timed


def bench_app(service: InferenceService, scratch: Path) -> Flask:
    """The app as the benchmarks drive it: the loaded service, a scratch database and store."""
    return create_app(
        {
            "APP_ENV": "testing",
            "MODELS_DIR": str(service.models_dir),
            "SECRET_KEY": "bench",
            "DATABASE_URL": f"sqlite:///{scratch / 'cases.sqlite3'}",
            "IMAGE_STORE": str(scratch / "images"),
        },
        inference=service,
    )


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
    set_aside_loaded()  # as a served worker does once its models are warm
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        app = bench_app(service, Path(scratch))
        client = admin_client(app)
        for name in field_model_names(args.models_dir):  # bare_seconds times a field model
            case_seconds(client, files[:4], name)  # warm: traces the batch shapes
            runs = [case_seconds(client, files, name) for _ in range(args.rounds)]
            bare = statistics.median(bare_seconds(service, files, name) for _ in range(args.rounds))
            seconds = statistics.median(r[0] for r in runs)
            steps = runs[len(runs) // 2][1]
            rows.append((name, seconds, bare, steps))
            print(f"[{name}] case {seconds:.2f} s, bare batch {bare * 1000:.0f} ms", flush=True)
        own_work = step_ms(files, service, args.rounds)
    args.out.write_text(_markdown(rows, own_work, args))
    print(f"wrote {args.out}")
    return 0


def _markdown(
    rows: list[tuple[str, float, float, dict[str, float]]],
    own_work: dict[str, float],
    args: argparse.Namespace,
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
        "(`timings_ms`): model ms is the field's share of the model pass and guard ms its own "
        "image statistics, both while the image threads make the statistics, thumbnails and "
        "cell crops beside the pass, so each is slower than alone. The rest of a case's time "
        "goes to multipart parsing and the database.",
        "",
        "## A field's own work, one thread",
        "",
        "Each step on the same images, one at a time on one thread (best of the rounds). "
        "The thumbnail, the cell crops and the guard's statistics run on the image threads "
        "while the model pass runs; decoding and the scale check come before it.",
        "",
        "| step | ms per image |",
        "|---|---|",
        *(f"| {name} | {ms:.1f} |" for name, ms in own_work.items()),
        f"| all | {sum(own_work.values()):.1f} |",
        "",
        "| model | bare model ms per image | the field's own work / the model's |",
        "|---|---|---|",
        *(
            f"| {name} | {bare * 1000 / n:.1f} | {sum(own_work.values()) / (bare * 1000 / n):.1f} |"
            for name, _, bare, _ in rows
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
