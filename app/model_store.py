"""Loads a committed model with its metadata and runs it on preprocessed arrays.

Used by the web app's inference service and by the training package's
evaluation, so both compute probabilities the same way (logits / temperature).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import app.layers  # noqa: E402, F401  (registers the custom layers before loading)
from app.views import over_views  # noqa: E402

METADATA_SUFFIX = ".json"
MODEL_SUFFIX = ".keras"


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class LoadedModel:
    """A Keras model, its metadata and a compiled logits function."""

    name: str
    metadata: dict[str, Any]
    keras_model: keras.Model
    logits_model: keras.Model = field(repr=False)
    _logits_fn: Any = field(repr=False)

    @property
    def input_size(self) -> int:
        return int(self.metadata["input_size"])

    @property
    def class_ids(self) -> list[str]:
        return list(self.metadata["class_ids"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def views(self) -> int:
        """How many test-time views (``app.views``) each prediction averages."""
        return views_of(self.metadata)

    @property
    def temperature(self) -> float:
        return float(self.metadata.get("calibration", {}).get("temperature", 1.0))

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits (mean over the model's views) for preprocessed images, in batches of 64."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        out = [self._logits_fn(tf.constant(x[i:i + 64])).numpy() for i in range(0, len(x), 64)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_ids)), np.float32)

    def predict(self, x: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities; temperature-scaled unless ``calibrated`` is False."""
        t = self.temperature if calibrated else 1.0
        return softmax(self.logits(x).astype(np.float64) / t)


def views_of(metadata: dict[str, Any]) -> int:
    return int(metadata.get("inference", {}).get("views", 1))


def read_metadata(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def model_names(models_dir: str | Path) -> list[str]:
    """Names of the models in ``models_dir`` that have both a .keras file and metadata."""
    root = Path(models_dir)
    stems = (p.stem for p in root.glob(f"*{MODEL_SUFFIX}"))
    return sorted(s for s in stems if (root / f"{s}{METADATA_SUFFIX}").is_file())


def load_model(models_dir: str | Path, name: str) -> LoadedModel:
    """Load ``name`` from ``models_dir`` and compile its logits function."""
    root = Path(models_dir)
    metadata = read_metadata(root / f"{name}{METADATA_SUFFIX}")
    model = keras.saving.load_model(root / f"{name}{MODEL_SUFFIX}", compile=False)
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    size = int(metadata["input_size"])
    fn = tf.function(
        over_views(lambda x: logits_model(x, training=False), views_of(metadata)),
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
    )
    return LoadedModel(name=name, metadata=metadata, keras_model=model,
                       logits_model=logits_model, _logits_fn=fn)
