"""Loads a trained model with its card and runs it on preprocessed arrays.

Serving, evaluation and training's calibration all call ``LoadedModel.logits``
and ``LoadedModel.predict``, so every one of them computes probabilities the
same way: softmax of the logits (averaged over the model's views) divided by
the card's temperature. Loaded for serving (``served=True``), the network runs on LiteRT
(converted by ``app.core.runtime``, run by ``app.core.lite_network``, in the image processes
too for a case's photographs), within 1e-4 of TensorFlow's probabilities; training keeps
TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import app.core.layers  # noqa: F401  (registers the custom layers before loading)
from app.core.lite_network import LiteNetwork
from app.core.model_card import ModelCard
from app.core.model_files import model_files
from app.core.orientations import averaged_over_views
from app.core.runtime import convert, served_network

LOGITS_LAYER = "logits"
BATCH = 64


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


@dataclass
class LoadedModel:
    """A Keras model, its card and a compiled logits function."""

    card: ModelCard
    keras_model: Any
    logits_model: Any = field(repr=False)
    _logits_fn: Any = field(repr=False)
    # The served network (features and logits) on LiteRT; None: TensorFlow.
    network: LiteNetwork | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def class_ids(self) -> list[str]:
        return list(self.card.class_ids)

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def views(self) -> int:
        """How many test-time views (``app.core.orientations``) each prediction averages."""
        return self.card.views

    @property
    def temperature(self) -> float:
        return self.card.calibration.temperature

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits (mean over the model's views) of preprocessed images, in batches."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if self.network is not None:
            out = [self.network.run(x[i : i + BATCH])[1] for i in range(0, len(x), BATCH)]
        else:
            out = [
                self._logits_fn(tf.constant(x[i : i + BATCH])).numpy()
                for i in range(0, len(x), BATCH)
            ]
        if not out:
            return np.zeros((0, len(self.class_ids)), np.float32)
        return np.concatenate(out)

    def probabilities(self, logits: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities from this model's logits; temperature-scaled unless told not."""
        t = self.temperature if calibrated else 1.0
        return softmax(np.asarray(logits, dtype=np.float64) / t)

    def predict(self, x: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities of preprocessed images."""
        return self.probabilities(self.logits(x), calibrated)


def load_model(models_dir: str | Path, name: str, served: bool = False) -> LoadedModel:
    """Load ``name`` from ``models_dir`` and compile its logits function; ``served``: its
    network converted for LiteRT too, which then computes its logits and features."""
    files = model_files(models_dir, name)
    card = ModelCard.load(files.card)
    model = keras.saving.load_model(files.weights, compile=False)
    logits_model = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    size = card.input_size
    fn = tf.function(
        averaged_over_views(lambda x: logits_model(x, training=False), card.views),
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
    )
    network = convert(served_network(model), size, card.views, files.weights) if served else None
    return LoadedModel(
        card=card, keras_model=model, logits_model=logits_model, _logits_fn=fn, network=network
    )
