"""The model call four ways, one thread: Keras ``predict``, the compiled ``tf.function``
served before, TensorFlow Lite's interpreter and ONNX Runtime.

    python -m benchmarks.model_bench [--models-dir DIR] [--data-dir DIR] [--fields 50]
                                     [--rounds 5] [--out benchmarks/MODEL_CALL.md]

Each runtime computes what the service needs of a network (a field model's penultimate
features and logits, averaged over its test-time views; a cell model's logits, attention
and embedding) for one photograph and for a case of ``--fields`` photographs in one
batch. The probabilities (a field's softmax at the card's temperature; a cell model's
attention-pooled field answer) are compared with the ``tf.function``'s.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")  # LiteRT's threads: one, as TensorFlow's

import numpy as np

from tests.support.images import smear_images, synth_images
from tests.support.models import ROOT, data_root, served_models_dir

RUNTIMES = ("Keras predict", "tf.function (before)", "TensorFlow Lite", "ONNX Runtime")
TOLERANCE = 1e-4
Run = Callable[[np.ndarray], list[np.ndarray]]


def best_ms(work: Callable[[], object], rounds: int) -> float:
    work()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def inputs(files: list[bytes], card: Any) -> tuple[np.ndarray, list[int]]:
    """The network inputs of the photographs, and how many rows each photograph has."""
    from app.core.cells.crops import read_photograph
    from app.core.preprocessing import load_image, prepare

    images = [load_image(d) for d in files]
    if card.unit == "cell":
        crops = [read_photograph(i).crops for i in images]
        crops = [c for c in crops if len(c)]
        return np.concatenate(crops), [len(c) for c in crops]
    x = np.stack([prepare(i, card.input_size, card.scale).x for i in images])
    return x, [1] * len(x)


def runtimes(models_dir: Path, name: str) -> tuple[Any, dict[str, Run]]:
    import keras
    import tensorflow as tf

    from app.core.cells.model import ATTENTION_LAYER, EMBEDDING_LAYER, load_cell_model
    from app.core.guards.ood import build_forward
    from app.core.lite_network import all_orientations
    from app.core.model_store import LOGITS_LAYER, load_model
    from app.core.runtime import convert, served_network

    loaded: Any
    card_unit = _unit(models_dir, name)
    if card_unit == "cell":
        loaded = load_cell_model(models_dir, name)
        card, views, keras_model = loaded.card, loaded.views, loaded.keras_model
        compiled = loaded._fn  # the card's views taken inside
        layers = (LOGITS_LAYER, ATTENTION_LAYER, EMBEDDING_LAYER)
        network = keras.Model(keras_model.inputs, [keras_model.get_layer(n).output for n in layers])
    else:
        loaded = load_model(models_dir, name)
        card, views, keras_model = loaded.card, loaded.views, loaded.keras_model
        compiled = build_forward(keras_model, card.input_size, views)
        network = served_network(keras_model)

    def served(x: np.ndarray) -> list[np.ndarray]:
        return [t.numpy() for t in compiled(tf.constant(x))]

    def viewed(run: Run) -> Run:
        if views == 1:
            return run

        def averaged(x: np.ndarray) -> list[np.ndarray]:
            out = run(all_orientations(x))
            return [o.reshape(views, len(x), *o.shape[1:]).mean(axis=0) for o in out]

        return averaged

    def predict(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o) for o in network.predict(x, verbose=0, batch_size=len(x))]

    # As served: one input (a photograph, a cell's crop) a call, the views in NumPy.
    lite = convert(network, card.input_size, views).run
    return card, {
        RUNTIMES[0]: viewed(predict),
        RUNTIMES[1]: served,
        RUNTIMES[2]: lite,
        RUNTIMES[3]: viewed(_onnx(network, card.input_size)),
    }


def _unit(models_dir: Path, name: str) -> str:
    from app.core.model_card import ModelCard
    from app.core.model_files import model_files

    return str(ModelCard.load(model_files(models_dir, name).card).unit)


def _function(network: Any, size: int) -> tuple[Any, list[Any]]:
    import tensorflow as tf

    spec = [tf.TensorSpec((None, size, size, 3), tf.float32, name="x")]
    return tf.function(lambda x: network(x, training=False), input_signature=spec), spec


def _onnx(network: Any, size: int) -> Run:
    """The network converted by tf2onnx, on ONNX Runtime with one thread."""
    import onnxruntime as ort  # type: ignore[import-untyped]
    import tf2onnx  # type: ignore[import-untyped]

    fn, spec = _function(network, size)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda x: list(session.run(None, {"x": x}))


def probabilities(card: Any, outputs: list[np.ndarray], rows: list[int]) -> np.ndarray:
    from app.core.cells.pooling import pool
    from app.core.model_store import softmax

    t = card.calibration.temperature
    if card.unit == "field":
        return softmax(np.asarray(outputs[1], np.float64) / t)
    logits, scores = np.asarray(outputs[0], np.float64), np.asarray(outputs[1], np.float64)[:, 0]
    bounds = np.cumsum([0, *rows])
    pooled = [
        pool(logits[a:b], scores[a:b])[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return softmax(np.stack(pooled) / t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=served_models_dir())
    parser.add_argument("--data-dir", type=Path, default=data_root())
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "MODEL_CALL.md")
    args = parser.parse_args()
    import tensorflow as tf

    from app.core.model_files import model_names

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    files = smear_images(args.data_dir, args.fields) if args.data_dir else synth_images(args.fields)
    load = os.getloadavg()
    rows = []
    for name in model_names(args.models_dir):
        card, runs = runtimes(args.models_dir, name)
        x, per_field = inputs(files, card)
        one = x[: per_field[0]]
        reference = probabilities(card, runs[RUNTIMES[1]](x), per_field)
        for runtime, run in runs.items():
            single = best_ms(partial(run, one), args.rounds)
            batched = best_ms(partial(run, x), args.rounds) / len(per_field)
            diff = float(np.abs(probabilities(card, run(x), per_field) - reference).max())
            rows.append((name, runtime, single, batched, diff))
            print(
                f"[{name}] {runtime}: one {single:.2f} ms, batched {batched:.2f} ms a field, "
                f"probabilities within {diff:.1e}",
                flush=True,
            )
    text = _markdown(rows, args, load, os.getloadavg())
    args.out.write_text(text)
    print(text)
    return 0


def _markdown(
    rows: list[tuple[str, str, float, float, float]],
    args: argparse.Namespace,
    before: tuple[float, float, float],
    after: tuple[float, float, float],
) -> str:
    lines = [
        "# Model call benchmark",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m benchmarks.model_bench "
        f"--fields {args.fields} --rounds {args.rounds}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one thread "
        "(TensorFlow intra/inter-op 1, ONNX Runtime 1 thread, TensorFlow Lite 1 thread), load "
        f"average {' / '.join(f'{v:.2f}' for v in before)} before and "
        f"{' / '.join(f'{v:.2f}' for v in after)} after. Best of the rounds.",
        "",
        "One field: one photograph (a cell model: that photograph's cells). Batched: "
        f"{args.fields} photographs in one call, ms per photograph. Probabilities: the largest "
        "difference from the tf.function's over the batch (a field's calibrated softmax; a "
        f"cell model's pooled field answer); the served runtime must be within {TOLERANCE:g}.",
        "",
        "| model | runtime | one field ms | batched ms a field | probabilities within |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {runtime} | {single:.2f} | {batched:.2f} | {diff:.1e} |"
        for name, runtime, single, batched, diff in rows
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
