"""A field model's network as served: LiteRT (TensorFlow Lite's interpreter), not TensorFlow.

At load, the Keras network's penultimate features and logits are converted by TensorFlow's
own converter (weights frozen in), checked against TensorFlow on two inputs, and run one
photograph at a time, the model's test-time views taken here in NumPy. Training, the
cell models and Grad-CAM keep TensorFlow. Why LiteRT: ``benchmarks/MODEL_CALL.md`` and
docs/decisions.md ("The model call").
"""

from __future__ import annotations

import os
import threading
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

LOGITS_LAYER = "logits"
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


def threads() -> int:
    """Threads per network call: TensorFlow's setting (gunicorn sets it per worker), else 1
    (a photograph's network is too small to share)."""
    configured = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()
    return max(1, int(configured)) if configured else 1


class LiteNetwork:
    """A field model's (features, logits) on LiteRT; ``run`` is safe from several threads
    (one interpreter, taken in turn: a photograph's call is a few milliseconds)."""

    def __init__(self, flat: bytes, views: int = 1) -> None:
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
    def convert(cls, model: Any, input_size: int, views: int = 1) -> LiteNetwork:
        """The served network of a Keras field model, checked against TensorFlow."""
        network = served_network(model)
        spec = [tf.TensorSpec((None, input_size, input_size, 3), tf.float32)]
        fn = tf.function(lambda x: network(x, training=False), input_signature=spec)
        # The function as the trackable object: its variables are frozen into the file.
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [fn.get_concrete_function()], fn
        )
        lite = cls(converter.convert(), views)
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
        """(features, logits) of a batch (B, S, S, 3) of float32 inputs, over the views."""
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
