"""Out-of-distribution guard: is this image like the training smears at all?

The guard combines two Mahalanobis distances, each fitted on the training split
by ``training/ood.py`` and stored in ``models/<name>.ood.npz``:

* ``features``: the penultimate Dense layer's activations to the nearest of the
  class-conditional Gaussians (shared, shrunk covariance). Catches inputs the
  network itself has never seen the like of.
* ``image``: cheap colour and texture statistics of the picture to one Gaussian,
  taken after evening out the illumination and the background's colour (``balanced``),
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

from app.core.model_files import model_files
from app.core.model_store import LOGITS_LAYER, LoadedModel
from app.core.orientations import averaged_over_views
from app.core.parallel import parallel_map
from app.core.preprocessing import to_model_input
from app.core.scale import illumination

# One size for every model (the data set's own): a smaller one blurs away the magnification.
STATS_SIZE = 224
COMPONENTS = ("features", "image")
REASONS = {
    "features": "the network's features are unlike those of the training smears",
    "image": "colour, brightness or texture scale is unlike a stained blood smear photograph",
}
# Brightness the background is brought to before the statistics (the training smears' own).
BACKGROUND_LEVEL = 0.9
# Pixel offsets for the texture-scale profile (magnification shows up here).
_OFFSETS = (1, 2, 4, 8, 16)


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


def penultimate_layer(model: Any) -> Any:
    """The last Dense layer before the ``logits`` layer (dropout in between is a no-op)."""
    layers = model.layers
    index = [layer.name for layer in layers].index(LOGITS_LAYER)
    for layer in reversed(layers[:index]):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise ValueError(f"model {model.name!r} has no Dense layer before 'logits'")


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


def image_statistics(x: np.ndarray) -> np.ndarray:
    """Colour and texture statistics of one RGB float image in [0, 1], shape (H, W, 3).

    Means, spreads and correlations of the channels; opponent-colour means of the
    whole picture and of its darkest tenth (the stained nuclei); stained, white and
    black fractions; and the texture-scale profile (mean grey difference at growing
    pixel offsets, relative to the grey spread). Spreads are logged so the statistics
    are closer to Gaussian.
    """
    eps = 1e-3
    # Contiguous channel planes: reductions over them are several times faster than over (H, W, 3).
    red, green, blue = planes = np.moveaxis(np.asarray(x, dtype=np.float32), -1, 0).copy()
    mean = np.array([p.mean(dtype=np.float64) for p in planes])
    std = np.array([p.std(dtype=np.float64) for p in planes])
    corr = [
        ((planes[i] * planes[j]).mean(dtype=np.float64) - mean[i] * mean[j])
        / ((std[i] + eps) * (std[j] + eps))
        for i, j in ((0, 1), (0, 2), (1, 2))
    ]
    grey = (red + green + blue) / np.float32(3)
    red_green = red - green
    yellow_blue = (red + green) / 2 - blue
    dark = grey <= _quantile(grey, 0.1)
    chroma = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    g_std = float(grey.std(dtype=np.float64)) + eps
    texture = []
    for d in _OFFSETS:
        down = np.abs(grey[d:, :] - grey[:-d, :]).mean(dtype=np.float64)
        across = np.abs(grey[:, d:] - grey[:, :-d]).mean(dtype=np.float64)
        texture.append(np.log((down + across) / 2 / g_std + eps))
    return np.array(
        [
            *mean,
            *np.log(std + eps),
            *corr,
            red_green.mean(dtype=np.float64),
            yellow_blue.mean(dtype=np.float64),
            red_green[dark].mean(dtype=np.float64),
            yellow_blue[dark].mean(dtype=np.float64),
            np.log(chroma.mean(dtype=np.float64) + eps),
            (chroma > 0.15).mean(),
            np.log((grey > 0.92).mean() + eps),
            np.log((grey < 0.15).mean() + eps),
            np.log(g_std),
            *texture,
        ],
        dtype=np.float64,
    )


def _quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation) by a partial sort, which is faster."""
    flat = values.ravel()
    position = q * (flat.size - 1)
    low = int(position)
    high = min(low + 1, flat.size - 1)
    part = np.partition(flat, (low, high))
    return float(part[low] + (part[high] - part[low]) * (position - low))


def balanced(x: np.ndarray) -> np.ndarray:
    """The image with its illumination made even and its background a neutral white.

    Vignetting and the camera's white balance are capture conditions, not signs of a
    foreign image; the colours of the cells against their background still are.
    """
    planes = np.moveaxis(np.asarray(x, dtype=np.float32), -1, 0)
    lum = (planes[0] + planes[1] + planes[2]) / np.float32(3)
    flatten = 1 / illumination(lum)
    flat = planes * flatten
    bright = lum * flatten >= _quantile(lum * flatten, 0.75)
    background = np.maximum([np.median(plane[bright]) for plane in flat], 1e-3)
    flat *= (BACKGROUND_LEVEL / background).astype(np.float32)[:, None, None]
    return np.clip(np.moveaxis(flat, 0, -1), 0.0, 1.0)


def image_statistics_of(images: Sequence[Image.Image]) -> np.ndarray:
    """``image_statistics`` of PIL images at the fixed STATS_SIZE, balanced first; a row each."""
    # Image by image on the pool's threads: one image's planes stay in the cache.
    rows = parallel_map(
        lambda image: image_statistics(balanced(to_model_input(image, STATS_SIZE))), images
    )
    return np.stack(rows)


def min_mahalanobis(v: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``v`` to the nearest row of ``means``."""
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    diff = v[:, None, :] - means[None, :, :]
    d2 = np.einsum("nkd,de,nke->nk", diff, precision, diff)
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
        path = model_files(models_dir, loaded.name).ood
        section = loaded.card.ood
        if not path.is_file() or section is None:
            raise OodNotFittedError(f"no OOD statistics for model {loaded.name!r} in {path.parent}")
        with np.load(path) as arrays:
            data = {k: arrays[k].astype(np.float64) for k in arrays.files}
        return cls(
            model_name=loaded.name,
            feature_means=data["feature_means"],
            feature_precision=data["feature_precision"],
            image_mean=data["image_mean"][None, :],
            image_precision=data["image_precision"],
            scales=dict(section.component_scales),
            threshold=section.threshold,
            input_size=loaded.input_size,
            _forward=build_forward(loaded.keras_model, loaded.input_size, loaded.views),
        )

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and raw logits of one input (S, S, 3) or a batch."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
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
        parts = self.components(features, image_statistics_of(images))
        return [self.result({k: float(v[i]) for k, v in parts.items()}) for i in range(len(images))]

    def score(self, x: np.ndarray, image: Image.Image) -> OodResult:
        """Score one image: ``x`` its model input (S, S, 3), ``image`` the decoded RGB image."""
        features, _ = self.forward(x)
        return self.score_features(features, image)
