"""Out-of-distribution guard: is this image like the training smears at all?

The guard combines two Mahalanobis distances, each fitted on the training split
by ``training/ood.py`` and stored in ``models/<name>.ood.npz``:

* ``features``: the penultimate Dense layer's activations to the nearest of the
  class-conditional Gaussians (shared, shrunk covariance). Catches inputs the
  network itself has never seen the like of.
* ``image``: cheap colour and texture statistics of the picture to one Gaussian,
  taken after evening out the illumination and the background's colour
  (``app.core.guards.image_stats``, which loads no TensorFlow),
  so a camera's white balance or vignetting is not foreign. The networks are
  trained with colour augmentation, so their features barely move for a recoloured
  smear; these statistics do, and they also see the magnification (texture scale)
  and blank or saturated pictures.

Each distance is divided by its own validation quantile and the larger of the two
is the score; the threshold on it was set on the validation split.

Use in the inference service, once per model per process::

    guard = OodGuard.load(models_dir, loaded)        # raises OodNotFittedError if absent
    features, logits = guard.forward(x)               # the one forward pass, x (S, S, 3)
    probs = loaded.probabilities(logits)              # same as loaded.predict(x)
    ood = guard.score_features(features, image)       # OodResult

For a batch, ``field_statistics`` can be started on the image threads before the
forward pass and given to ``score_statistics`` after it.

``guard.score(x, image)`` does the forward pass itself when logits are not needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from app.core.guards.image_stats import field_statistics
from app.core.lite_network import LiteNetwork
from app.core.model_card import ModelCard
from app.core.model_files import model_files
from app.core.model_store import LOGITS_LAYER, LoadedModel
from app.core.orientations import averaged_over_views
from app.core.parallel import parallel_map
from app.core.runtime import penultimate_layer

COMPONENTS = ("features", "image")
REASONS = {
    "features": "the network's features are unlike those of the training smears",
    "image": "colour, brightness or texture scale is unlike a stained blood smear photograph",
}


class OodNotFittedError(FileNotFoundError):
    """The model has no fitted OOD statistics (run ``python -m training fit-ood``)."""


@dataclass(frozen=True)
class OodResult:
    score: float
    threshold: float
    out_of_distribution: bool
    reasons: list[str] = field(default_factory=list)
    # The parts of the score over the threshold (keys of REASONS).
    components: list[str] = field(default_factory=list)


def build_forward(model: Any, input_size: int, views: int = 1) -> Any:
    """A compiled function: batch of inputs -> (penultimate features, logits), one pass.

    Both are averaged over ``views`` test-time views, as ``LoadedModel.logits`` does.
    """
    sub = keras.Model(
        model.inputs, [penultimate_layer(model).output, model.get_layer(LOGITS_LAYER).output]
    )
    return tf.function(
        averaged_over_views(lambda x: sub(x, training=False), views),
        input_signature=[tf.TensorSpec((None, input_size, input_size, 3), tf.float32)],
    )


def image_statistics_of(images: Sequence[Image.Image]) -> np.ndarray:
    """``field_statistics`` of each image, a row each."""
    # Image by image on the pool's threads: one image's planes stay in the cache.
    return np.stack(parallel_map(field_statistics, images))


def min_mahalanobis(v: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``v`` to the nearest row of ``means``."""
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    diff = v[:, None, :] - means[None, :, :]
    # A matrix product, not a three-operand einsum, which loops in C without BLAS.
    d2 = ((diff @ precision) * diff).sum(axis=2)
    return np.asarray(d2.min(axis=1))


@dataclass
class OodGuard:
    """Fitted statistics of one model plus its compiled features+logits function."""

    model_name: str
    feature_means: np.ndarray
    feature_precision: np.ndarray
    image_mean: np.ndarray
    image_precision: np.ndarray
    scales: dict[str, float]
    threshold: float
    input_size: int
    _forward: Any = field(repr=False, default=None)

    @classmethod
    def load(cls, models_dir: str | Path, loaded: LoadedModel) -> OodGuard:
        """Read ``<name>.ood.npz`` and the card's ``ood`` section; compile the forward pass once."""
        guard = cls.read(models_dir, loaded.card)
        guard._forward = loaded.network or build_forward(
            loaded.keras_model, loaded.input_size, loaded.views
        )
        return guard

    @classmethod
    def read(cls, models_dir: str | Path, card: ModelCard) -> OodGuard:
        """The fitted statistics alone, for a model that supplies its own features."""
        path = model_files(models_dir, card.name).ood
        section = card.ood
        if not path.is_file() or section is None:
            raise OodNotFittedError(f"no OOD statistics for model {card.name!r} in {path.parent}")
        with np.load(path) as arrays:
            data = {k: arrays[k].astype(np.float64) for k in arrays.files}
        return cls(
            model_name=card.name,
            feature_means=data["feature_means"],
            feature_precision=data["feature_precision"],
            image_mean=data["image_mean"][None, :],
            image_precision=data["image_precision"],
            scales=dict(section.component_scales),
            threshold=section.threshold,
            input_size=card.input_size,
        )

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and raw logits of one input (S, S, 3) or a batch."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if isinstance(self._forward, LiteNetwork):
            features, logits = self._forward.run(x)
            return features, logits
        features, logits = self._forward(tf.constant(x))
        return features.numpy(), logits.numpy()

    def components(self, features: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
        """Each component's distance divided by its validation scale (batches allowed)."""
        return {
            "features": min_mahalanobis(features, self.feature_means, self.feature_precision)
            / self.scales["features"],
            "image": min_mahalanobis(stats, self.image_mean, self.image_precision)
            / self.scales["image"],
        }

    def result(self, parts: dict[str, float]) -> OodResult:
        score = max(parts.values())
        flagged = bool(score > self.threshold)
        over = [k for k in COMPONENTS if parts[k] > self.threshold] if flagged else []
        return OodResult(
            score=float(score),
            threshold=self.threshold,
            out_of_distribution=flagged,
            reasons=[REASONS[k] for k in over],
            components=over,
        )

    def score_features(self, features: np.ndarray, image: Image.Image) -> OodResult:
        """Score one image from its already computed penultimate features."""
        return self.score_many(np.atleast_2d(features)[:1], [image])[0]

    def score_many(self, features: np.ndarray, images: Sequence[Image.Image]) -> list[OodResult]:
        """Score a batch of images from their penultimate features (a row each)."""
        return self.score_statistics(features, image_statistics_of(images))

    def score_statistics(self, features: np.ndarray, stats: np.ndarray) -> list[OodResult]:
        """Score a batch from its penultimate features and its ``field_statistics`` rows."""
        parts = self.components(features, stats)
        return [self.result({k: float(v[i]) for k, v in parts.items()}) for i in range(len(stats))]

    def score(self, x: np.ndarray, image: Image.Image) -> OodResult:
        """Score one image: ``x`` its model input (S, S, 3), ``image`` the decoded RGB image."""
        features, _ = self.forward(x)
        return self.score_features(features, image)
