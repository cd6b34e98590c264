"""A model's network as served: LiteRT (TensorFlow Lite's interpreter), not TensorFlow.

At load, the served outputs of the Keras network (a field model's penultimate features and
logits; a cell model's logits, attention score and features) are converted by TensorFlow's
own converter (weights frozen in; kept between processes under the .keras file's SHA-256),
checked against TensorFlow on two inputs, and run by ``app.core.lite_network`` one input at
a time (a photograph, or a cell's crop), the model's test-time views taken in NumPy.
Training and Grad-CAM keep TensorFlow.
Why LiteRT: ``benchmarks/MODEL_CALL.md`` and docs/decisions.md ("The model call").
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from app.core.lite_network import LiteNetwork, cache_dir, kept

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


def convert(
    network: Any, input_size: int, views: int = 1, source: Path | None = None
) -> LiteNetwork:
    """``network`` (a Keras model of the served outputs: ``served_network`` of a field model)
    converted and checked against TensorFlow. With the model's ``source`` file, the conversion
    is kept in ``cache_dir()`` under that file's SHA-256, for the next process to load (it is
    checked all the same) and for the image processes to run (``LiteNetwork.file``)."""
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
    lite = LiteNetwork(flat, views, kept(cached, flat, views))
    check(lite, fn, input_size)
    if source is not None and lite.file is None:
        LOG.warning(
            "the converted network of %s could not be kept (no cache folder, or it cannot be "
            "written): the serving process runs it for cases, not the image processes",
            source.name,
        )
    return lite


def check(lite: LiteNetwork, fn: Any, input_size: int) -> None:
    """ValueError unless the network gives the TensorFlow function's outputs (to a thousandth
    of their largest value) on two random inputs (not a blank one: the stain layer divides a
    blank image's zero spread by its epsilon)."""
    x = np.random.default_rng(0).random((2, input_size, input_size, 3), np.float32)
    expected = [t.numpy() for t in fn(tf.constant(x))]
    got = lite.call(x)
    for e, g in zip(expected, got, strict=True):
        scale = TOLERANCE * max(1.0, float(np.abs(e).max()))
        if e.shape != g.shape or float(np.abs(e - g).max()) > scale:
            raise ValueError("the LiteRT network does not give TensorFlow's outputs")
