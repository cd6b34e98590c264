"""Grad-CAM heatmaps: which parts of the photograph drove the model's score for a class.

Build one ``GradCam`` per loaded model at start-up (it traces a TensorFlow
graph once), then call ``heatmap`` per request and render it with ``overlay_png``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps  # colormap tables only, no pyplot
from PIL import Image

from app.core.imaging import DISPLAY_SIDE, downscale, png_bytes
from app.core.model_store import LOGITS_LAYER, LoadedModel
from app.core.orientations import check_views, mean_over_views, undo_orientations, views_of

# 256-entry RGB lookup table, built once.
# Viridis: perceptually even, readable with colour-vision deficiencies and in grey print.
COLORMAP_NAME = "viridis"
COLORMAP = (colormaps[COLORMAP_NAME](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)
# Opacity of the hottest pixels; cold pixels show the photograph unchanged.
MAX_ALPHA = 0.6
_SKIPPED = (keras.layers.Dropout, keras.layers.SpatialDropout2D)
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


# A leukocyte spans about a tenth of the field; a coarser map smears its heat over its neighbours.
MIN_MAP_FRACTION = 1 / 8


def target_layer(model: Any) -> str:
    """Name of the last 4-D conv-block layer before flatten whose map is fine enough.

    A block's activation before its pooling layer is used: pooling halves the
    resolution of the map without adding information. Maps narrower than
    MIN_MAP_FRACTION of the input are skipped.
    """
    candidates: list[Any] = []
    min_side = int(model.input_shape[1] * MIN_MAP_FRACTION)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer.output.shape) != 4:
            break  # flatten (or global pooling): the spatial part of the model ends here
        if isinstance(layer, _SKIPPED + _POOLING):
            continue
        if layer.output.shape[1] < min_side:
            continue
        candidates.append(layer)
    if not candidates:
        raise ValueError(f"model {model.name!r} has no 4-D layer before its flatten layer")
    return str(candidates[-1].name)


def _layers_up_to(model: Any, last: str) -> list[Any]:
    """The chain of layers from the input to ``last``, in order."""
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        if last not in names:
            raise ValueError(f"model {model.name!r} has no layer {last!r}")
        return list(model.layers[: names.index(last) + 1])
    # A functional model (a cell model) branches after its features: walk back from ``last``.
    chain = [model.get_layer(last)]
    while True:
        parents = chain[-1]._inbound_nodes[0].parent_nodes
        if not parents or isinstance(parents[0].operation, keras.layers.InputLayer):
            return chain[::-1]
        chain.append(parents[0].operation)


class GradCam:
    """Grad-CAM for a Keras Sequential classifier that has a ``logits`` Dense layer.

    ``model`` is a ``LoadedModel`` (the app) or a bare Keras model (a cell model's, or
    tests of untrained architectures). ``layer_name`` overrides the automatic choice;
    ``views`` the test-time views, which a ``LoadedModel`` otherwise brings and a bare
    model lacks (1).
    """

    def __init__(
        self, model: LoadedModel | Any, layer_name: str | None = None, views: int | None = None
    ) -> None:
        keras_model = model.keras_model if isinstance(model, LoadedModel) else model
        self.input_size = int(keras_model.inputs[0].shape[1])
        self.layer_name = layer_name or target_layer(keras_model)
        self.n_classes = int(keras_model.get_layer(LOGITS_LAYER).output.shape[-1])
        # Run the layers one by one: the target activation must be a tensor on the
        # tape's path to the logits (a multi-output keras.Model returns copies).
        layers = _layers_up_to(keras_model, LOGITS_LAYER)
        target = self.layer_name
        size = self.input_size

        # Models that average test-time views are explained the same way: the
        # gradient of the mean logit, each view's map turned back and averaged.
        if views is None:
            views = model.views if isinstance(model, LoadedModel) else 1
        self.views = check_views(views)

        def step(x: tf.Tensor, class_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                h = views_of(x[None], views)
                activations = None
                for layer in layers:
                    h = layer(h, training=False)
                    if layer.name == target:
                        activations = h
                logits = mean_over_views(h, views)[0]
                # A negative index asks for the top-scoring class.
                index = tf.where(
                    class_index < 0, tf.argmax(logits, output_type=tf.int32), class_index
                )
                score = logits[index]
            grads = tape.gradient(score, activations)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cams = tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1, keepdims=True))
            cams = tf.image.resize(cams, (size, size), method="bilinear")
            if views > 1:
                cams = undo_orientations(cams)
            cam = tf.reduce_mean(cams, axis=0)[..., 0]
            cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam))
            return tf.clip_by_value(cam, 0.0, 1.0), index, logits

        self._step = tf.function(
            step,
            input_signature=[
                tf.TensorSpec((size, size, 3), tf.float32),
                tf.TensorSpec((), tf.int32),
            ],
        )
        # Trace now, so the first request does not pay for it.
        self._step(tf.zeros((size, size, 3), tf.float32), tf.constant(-1, tf.int32))

    def _run(self, x: np.ndarray, class_index: int) -> tuple[np.ndarray, int, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected an array of shape ({self.input_size}, "
                f"{self.input_size}, 3), got {x.shape}"
            )
        cam, index, logits = self._step(tf.constant(x), tf.constant(class_index, tf.int32))
        return cam.numpy(), int(index.numpy()), logits.numpy()

    def heatmap(self, x: np.ndarray, class_index: int) -> np.ndarray:
        """(S, S) float32 in [0, 1]: Grad-CAM of ``class_index`` for one preprocessed image.

        ``x`` is the output of ``app.core.preprocessing.to_model_input`` for this model.
        All zeros when nothing in the image raises the class's score.
        """
        if not 0 <= class_index < self.n_classes:
            raise ValueError(f"class_index must be in [0, {self.n_classes}), got {class_index}")
        return self._run(x, class_index)[0]

    def heatmap_top(self, x: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
        """Heatmap of the top-scoring class, that class's index and the raw logits, in one pass."""
        return self._run(x, -1)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) heat in [0, 1] to (H, W, 3) float32 RGB in [0, 255]."""
    index = np.clip(np.rint(np.nan_to_num(heatmap) * 255), 0, 255).astype(np.intp)
    return np.asarray(COLORMAP[index])


def overlay_png(image: Image.Image, heatmap: np.ndarray, max_side: int = DISPLAY_SIDE) -> bytes:
    """PNG of the photograph at display size (long side <= ``max_side``) with the heat over it.

    The heatmap covers the whole photograph (the model sees the whole image,
    squashed to a square), so it is stretched back to the photograph's aspect.
    """
    shown = downscale(image, max_side)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}")
    heat = np.asarray(Image.fromarray(heat).resize(shown.size, Image.Resampling.BILINEAR))
    heat = np.clip(heat, 0.0, 1.0)[..., None]
    photo = np.asarray(shown, dtype=np.float32)
    alpha = MAX_ALPHA * heat
    blended = photo * (1.0 - alpha) + colorize(heat[..., 0]) * alpha
    return png_bytes(Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8)))


def heat_layer_png(heatmap: np.ndarray, size: tuple[int, int]) -> bytes:
    """The heat alone as an RGBA PNG of ``size``: its colour, opaque where the heat is high.

    The page lays it over the photograph with an opacity the user sets.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    heat = np.clip(np.asarray(Image.fromarray(heat).resize(size, Image.Resampling.BILINEAR)), 0, 1)
    alpha = np.rint(255 * np.sqrt(heat))[..., None]
    rgba = np.concatenate([colorize(heat), alpha], axis=-1)
    return png_bytes(Image.fromarray(rgba.astype(np.uint8)))
