"""A trained cell model: class logits, an attention score and features for each crop.

Serving, evaluation and calibration call ``LoadedCellModel.run``; a field's answer
is ``app.core.cells.pooling.pool`` of its cells, its probabilities the softmax of
the pooled logits divided by the card's temperature. A card with 8 views scores each
crop as the mean of its eight flips and quarter turns (``app.core.orientations``).
Loaded for serving (``served=True``), the network runs on LiteRT, a crop at a time
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
from app.core.cells.crops import CROP_PX
from app.core.cells.pooling import pool
from app.core.lite_network import LiteNetwork
from app.core.model_card import ModelCard
from app.core.model_files import model_files
from app.core.model_store import LOGITS_LAYER, softmax
from app.core.orientations import averaged_over_views
from app.core.runtime import convert

ATTENTION_LAYER = "attention"
EMBEDDING_LAYER = "embedding"
# Crops per model call: a case's cells go through in a few calls.
CELL_BATCH = 256


@dataclass(frozen=True)
class CellOutputs:
    """Per crop: class logits (n, k), attention scores (n,) and features (n, d)."""

    logits: np.ndarray
    scores: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def part(self, start: int, end: int) -> CellOutputs:
        return CellOutputs(self.logits[start:end], self.scores[start:end], self.features[start:end])


@dataclass(frozen=True)
class FieldAnswer:
    """A field's calibrated probabilities, its pooled features and its cells' weights."""

    probabilities: np.ndarray
    features: np.ndarray
    weights: np.ndarray


@dataclass
class LoadedCellModel:
    """A Keras cell model, its card and a compiled function of a batch of crops."""

    card: ModelCard
    keras_model: Any
    _fn: Any = field(repr=False)
    # The served network (logits, attention scores, features) on LiteRT; None: TensorFlow.
    network: LiteNetwork | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def class_ids(self) -> list[str]:
        return list(self.card.class_ids)

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def temperature(self) -> float:
        return self.card.calibration.temperature

    @property
    def views(self) -> int:
        """How many orientations of each crop its outputs average (the card's views)."""
        return self.card.views

    def run(self, crops: np.ndarray) -> CellOutputs:
        """Every crop (n, S, S, 3) floats in [0, 1] through the network (TensorFlow in
        batches, LiteRT one at a time); each output the mean over the card's views of the
        crop."""
        if not len(crops):
            width = int(self.keras_model.get_layer(EMBEDDING_LAYER).output.shape[-1])
            k = len(self.class_ids)
            return CellOutputs(np.zeros((0, k)), np.zeros(0), np.zeros((0, width)))
        if self.network is not None:
            return self.outputs_of(*self.network.run(crops))
        x = np.asarray(crops, np.float32)
        batches = [x[i : i + CELL_BATCH] for i in range(0, len(x), CELL_BATCH)]
        parts = [[t.numpy() for t in self._fn(tf.constant(b))] for b in batches]
        return self.outputs_of(*(np.concatenate(o) for o in zip(*parts, strict=True)))

    @staticmethod
    def outputs_of(logits: np.ndarray, scores: np.ndarray, features: np.ndarray) -> CellOutputs:
        """The network's outputs (logits, attention scores (n, 1), features) as ``run`` gives
        them: also those an image process computed (``app.core.reading.read_cells``)."""
        return CellOutputs(
            logits=np.asarray(logits, np.float64),
            scores=np.asarray(scores[:, 0], np.float64),
            features=np.asarray(features, np.float64),
        )

    def answer(self, outputs: CellOutputs, calibrated: bool = True) -> FieldAnswer:
        """One field's answer from its cells' outputs (at least one cell)."""
        logits, weights = pool(outputs.logits, outputs.scores)
        t = self.temperature if calibrated else 1.0
        return FieldAnswer(
            probabilities=softmax(logits[None] / t)[0],
            features=weights @ outputs.features,
            weights=weights,
        )

    def cell_probabilities(self, outputs: CellOutputs) -> np.ndarray:
        """Each cell's own class probabilities (n, k), at the card's temperature."""
        return softmax(outputs.logits / self.temperature)


def load_cell_model(models_dir: str | Path, name: str, served: bool = False) -> LoadedCellModel:
    """Load cell model ``name`` from ``models_dir`` and compile its crops function;
    ``served``: its network converted for LiteRT too, which then computes its outputs."""
    files = model_files(models_dir, name)
    card = ModelCard.load(files.card)
    model = keras.saving.load_model(files.weights, compile=False)
    outputs = [
        model.get_layer(LOGITS_LAYER).output,
        model.get_layer(ATTENTION_LAYER).output,
        model.get_layer(EMBEDDING_LAYER).output,
    ]
    inner = keras.Model(model.inputs, outputs)
    fn = tf.function(
        averaged_over_views(lambda x: inner(x, training=False), card.views),
        input_signature=[tf.TensorSpec((None, CROP_PX, CROP_PX, 3), tf.float32)],
    )
    network = convert(inner, CROP_PX, card.views, files.weights) if served else None
    return LoadedCellModel(card=card, keras_model=model, _fn=fn, network=network)
