"""A model's network as served: LiteRT (TensorFlow Lite's interpreter), not TensorFlow.

At load, the served outputs of the Keras network (a field model's penultimate features and
logits; a cell model's logits, attention score and features) are converted by TensorFlow's
own converter (weights frozen in; kept between processes under the .keras file's SHA-256),
checked against TensorFlow on two inputs, and run one input at a time (a photograph, or a
cell's crop), the model's test-time views taken here in NumPy. One at a time, an input's
outputs never depend on what else went in the call. Training and Grad-CAM keep TensorFlow.
Why LiteRT: ``benchmarks/MODEL_CALL.md`` and docs/decisions.md ("The model call").
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

from app.core.native_log import native_stderr_logged

LOGITS_LAYER = "logits"
LOG = logging.getLogger(__name__)
# Largest difference from TensorFlow's outputs the load-time check accepts, relative to the
# largest output (served probabilities are within 1e-4: benchmarks/MODEL_CALL.md).
TOLERANCE = 1e-3


def penultimate_layer(model: Any) -> Any:
    """The last Dense layer before the ``logits`` layer (dropout in between is a no-op)."""
    layers = model.layers
    index = [layer.name for layer in layers].index(LOGITS_LAYER)
    for layer in reversed(layers[:index]):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise ValueError(f"model {model.name!r} has no Dense layer before 'logits'")


def served_network(model: Any) -> Any:
    """The Keras network of what is served of a field model: (features, logits)."""
    outputs = [penultimate_layer(model).output, model.get_layer(LOGITS_LAYER).output]
    return keras.Model(model.inputs, outputs)


def all_orientations(x: np.ndarray) -> np.ndarray:
    """(B, H, W, C) -> (8B, H, W, C), as ``app.core.orientations.all_orientations``."""
    out = []
    for k in range(4):
        turned = np.rot90(x, k, axes=(1, 2))
        out += [turned, turned[:, :, ::-1]]
    return np.ascontiguousarray(np.concatenate(out))


def cache_dir() -> Path | None:
    """Where converted networks are kept between processes: ``LITERT_CACHE_DIR``, else a
    folder of this user's in the temporary directory; None when it cannot be made."""
    configured = os.environ.get("LITERT_CACHE_DIR", "").strip()
    folder = Path(configured or tempfile.gettempdir()) / (
        "" if configured else f"ball-classifier-litert-{os.getuid()}"
    )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid != os.getuid():
            return None  # someone else's folder: its files are not to be trusted
    except OSError:
        return None
    return folder


def _cached_path(source: Path | None, input_size: int) -> Path | None:
    folder = cache_dir() if source is not None else None
    if folder is None or source is None:
        return None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return folder / f"{digest}-{input_size}-tf{tf.__version__}.tflite"


def _read(path: Path | None) -> bytes | None:
    try:
        return path.read_bytes() if path is not None else None
    except OSError:
        return None


def _write(path: Path | None, flat: bytes) -> None:
    if path is None:
        return
    try:
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(flat)
        partial.replace(path)  # whole or not at all, whichever worker wrote it
    except OSError:
        return


def threads() -> int:
    """Threads per network call: TensorFlow's setting (gunicorn sets it per worker), else 1
    (a photograph's network is too small to share)."""
    configured = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()
    return max(1, int(configured)) if configured else 1


class LiteNetwork:
    """A served network's outputs on LiteRT; ``run`` is safe from several threads (one
    interpreter, taken in turn: an input's call is a few milliseconds or less)."""

    def __init__(self, flat: bytes, views: int = 1) -> None:
        with native_stderr_logged(LOG):
            self._interpreter = Interpreter(model_content=flat, num_threads=threads())
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        # The converter names a function's outputs Identity, Identity_1... in their order.
        outputs = sorted(
            self._interpreter.get_output_details(),
            key=lambda d: int(d["name"].rpartition("_")[2]) if "_" in d["name"] else 0,
        )
        self._outputs = [d["index"] for d in outputs]
        self._lock = threading.Lock()
        self.views = views

    @classmethod
    def convert(
        cls, network: Any, input_size: int, views: int = 1, source: Path | None = None
    ) -> LiteNetwork:
        """``network`` (a Keras model of the served outputs: ``served_network`` of a field
        model) converted and checked against TensorFlow. With the model's ``source`` file,
        the conversion is kept in ``cache_dir()`` under that file's SHA-256 for the next
        process to load (it is checked all the same)."""
        spec = [tf.TensorSpec((None, input_size, input_size, 3), tf.float32)]
        fn = tf.function(lambda x: network(x, training=False), input_signature=spec)
        cached = _cached_path(source, input_size)
        flat = _read(cached)
        if flat is None:
            # The function as the trackable object: its variables are frozen into the file.
            converter = tf.lite.TFLiteConverter.from_concrete_functions(
                [fn.get_concrete_function()], fn
            )
            flat = converter.convert()
            _write(cached, flat)
        lite = cls(flat, views)
        lite.check(fn, input_size)
        return lite

    def check(self, fn: Any, input_size: int) -> None:
        """ValueError unless the network gives the TensorFlow function's outputs (to a
        thousandth of their largest value) on two random inputs (not a blank one: the stain
        layer divides a blank image's zero spread by its epsilon)."""
        x = np.random.default_rng(0).random((2, input_size, input_size, 3), np.float32)
        expected = [t.numpy() for t in fn(tf.constant(x))]
        got = self._call(x)
        for e, g in zip(expected, got, strict=True):
            scale = TOLERANCE * max(1.0, float(np.abs(e).max()))
            if e.shape != g.shape or float(np.abs(e - g).max()) > scale:
                raise ValueError("the LiteRT network does not give TensorFlow's outputs")

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The outputs, in the network's order, of a batch (B, S, S, 3) of float32 inputs,
        each the mean over its views."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.views == 1:
            return self._call(x)
        outputs = self._call(all_orientations(x))
        return [o.reshape(self.views, len(x), *o.shape[1:]).mean(axis=0) for o in outputs]

    def _call(self, x: np.ndarray) -> list[np.ndarray]:
        interpreter = self._interpreter
        rows: list[list[np.ndarray]] = [[] for _ in self._outputs]
        with self._lock:
            for i in range(len(x)):
                interpreter.set_tensor(self._input, x[i : i + 1])
                interpreter.invoke()  # releases the GIL: the image threads go on meanwhile
                for row, index in zip(rows, self._outputs, strict=True):
                    row.append(interpreter.get_tensor(index))
        if not len(x):
            return [
                np.zeros((0, *interpreter.get_tensor(i).shape[1:]), np.float32)
                for i in self._outputs
            ]
        return [np.concatenate(row) for row in rows]
