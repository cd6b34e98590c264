"""Multiple-instance training of a cell classifier from field labels.

The network trained is the cell model (one crop in, class logits and an attention
score out) wrapped to take a bag: a field's cells, padded to ``bag`` with a mask.
``AttentionPool`` pools like ``app.core.cells.pooling.pool``, and the field's
label is the only supervision. Each epoch draws up to ``bag`` cells of each field
at random, and jitters them in the haematoxylin-eosin-DAB stain space (and, where the
recipe asks, in their geometry: any-angle turns, zooms and shifts).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from skimage.color import hed_from_rgb, rgb_from_hed

from app.core.cells.crops import CROP_PX
from app.core.cells.pooling import pool
from app.core.classes import CLASS_IDS
from app.core.orientations import ORIENTATIONS, all_orientations
from training.architectures import architecture
from training.cell_bags import Bags
from training.cell_config import VIEW_COUNTS, CellTrainConfig
from training.dataset import class_weights

log = logging.getLogger(__name__)
N_CLASSES = len(CLASS_IDS)


@keras.saving.register_keras_serializable(package="all_screen_training")
class AttentionPool(keras.layers.Layer):  # type: ignore[misc]
    """Field logits (B, K): the softmax-over-cells weighted mean of the cells' logits;
    padded cells (mask 0) get no weight."""

    def call(self, logits: Any, scores: Any, mask: Any) -> Any:
        scores = ops.squeeze(scores, -1) + (1.0 - mask) * -1e9
        weights = ops.softmax(scores, axis=-1)
        return ops.sum(weights[..., None] * logits, axis=1)


def mil_network(cell_model: keras.Model, bag: int) -> keras.Model:
    """The cell model applied to each cell of a bag, and attention-pooled."""
    crops = keras.Input((bag, CROP_PX, CROP_PX, 3), name="crops")
    mask = keras.Input((bag,), name="mask")
    flat = keras.layers.Reshape((CROP_PX, CROP_PX, 3))(ops.reshape(crops, (-1,) + crops.shape[2:]))
    logits, scores = cell_model(flat)
    logits = ops.reshape(logits, (-1, bag, N_CLASSES))
    scores = ops.reshape(scores, (-1, bag, 1))
    pooled = AttentionPool(name="pool")(logits, scores, mask)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="field")(pooled)
    return keras.Model([crops, mask], probabilities, name=f"mil_{cell_model.name}")


_TO_HED = tf.constant(hed_from_rgb, tf.float32)
_FROM_HED = tf.constant(rgb_from_hed, tf.float32)


def hed_jitter(crops: tf.Tensor, gain: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """Crops (..., 3) in [0, 1] with their HED stain densities scaled and shifted."""
    density = -tf.math.log(tf.clip_by_value(crops, 1e-3, 1.0))
    hed = tf.tensordot(density, _TO_HED, 1) * gain + offset
    return tf.clip_by_value(tf.exp(-tf.tensordot(hed, _FROM_HED, 1)), 0.0, 1.0)


def turn_and_zoom(
    crops: tf.Tensor, angle: tf.Tensor, zoom: tf.Tensor, shift: tf.Tensor
) -> tf.Tensor:
    """Crops (n, S, S, 3) each turned by ``angle`` (n,) radians about its centre, magnified
    ``zoom`` (n,) times and moved by ``shift`` (n, 2) pixels (x, y); the corners the turn
    brings in are the crop mirrored."""
    side = tf.cast(tf.shape(crops)[1], tf.float32)
    centre = (side - 1.0) / 2.0
    # The output pixel (x, y) reads the input at centre + R(angle) (p - centre) / zoom - shift.
    cos = tf.cos(angle) / zoom
    sin = tf.sin(angle) / zoom
    zeros = tf.zeros_like(angle)
    transforms = tf.stack(
        [
            cos,
            -sin,
            centre - cos * centre + sin * centre - shift[:, 0],
            sin,
            cos,
            centre - sin * centre - cos * centre - shift[:, 1],
            zeros,
            zeros,
        ],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=crops,
        transforms=transforms,
        output_shape=tf.shape(crops)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )


def crop_geometry(crops: tf.Tensor, strength: float) -> tf.Tensor:
    """Each crop turned by any angle, magnified 1 +- ``strength`` times and moved up to
    ``strength`` of its side: where a cell sits in its crop, and the scale estimate's error."""
    n = tf.shape(crops)[0]
    side = tf.cast(tf.shape(crops)[1], tf.float32)
    angle = tf.random.uniform((n,), 0.0, 2.0 * np.pi)
    zoom = tf.random.uniform((n,), 1.0 - strength, 1.0 + strength)
    shift = tf.random.uniform((n, 2), -strength, strength) * side
    return turn_and_zoom(crops, angle, zoom, shift)


def augment_bag(crops: tf.Tensor, config: CellTrainConfig) -> tf.Tensor:
    """One field's crops (bag, S, S, 3) jittered as a field, then cell by cell."""
    n = tf.shape(crops)[0]
    field_gain = tf.random.uniform((1, 1, 1, 3), 1 - config.hed_gain, 1 + config.hed_gain)
    field_offset = tf.random.uniform((1, 1, 1, 3), -config.hed_offset, config.hed_offset)
    cell_gain = tf.random.uniform((n, 1, 1, 3), 1 - config.cell_gain, 1 + config.cell_gain)
    crops = hed_jitter(crops, field_gain * cell_gain, field_offset)
    crops += tf.random.uniform((n, 1, 1, 1), -config.brightness, config.brightness)
    crops = tf.image.rot90(crops, tf.random.uniform((), 0, 4, tf.int32))
    flip = tf.random.uniform((n, 1, 1, 1)) < 0.5
    crops = tf.where(flip, tf.reverse(crops, axis=[2]), crops)
    if config.crop_geometry:
        crops = crop_geometry(crops, config.crop_geometry)
    return tf.clip_by_value(crops, 0.0, 1.0)


def draw_bag(
    bags: Bags, i: int, bag: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``bag`` of field i's cells at random, and their mask; a small field is padded
    with repeats of its cells (masked out), so padding never skews batch norm."""
    cells = bags.cells(i)
    n = len(cells)
    order = rng.permutation(n)
    chosen = order[:bag] if n >= bag else np.concatenate([order, rng.integers(0, n, bag - n)])
    mask = np.zeros(bag, np.float32)
    mask[: min(n, bag)] = 1.0
    return cells[chosen], mask


def bag_dataset(
    bags: Bags, indices: np.ndarray, config: CellTrainConfig, training: bool
) -> tf.data.Dataset:
    """Batches of ((crops, mask), one-hot label, weight) over the fields with cells."""
    indices = np.array([i for i in indices if bags.count(i) > 0])
    weights = class_weights(bags.labels[indices])
    rng = np.random.default_rng(config.seed)

    def fields() -> Iterator[tuple[np.ndarray, np.ndarray, int, float]]:
        order = rng.permutation(indices) if training else indices
        for i in order:
            crops, mask = draw_bag(bags, int(i), config.bag, rng)
            label = int(bags.labels[i])
            yield crops, mask, label, weights[label] if training else 1.0

    signature = (
        tf.TensorSpec((config.bag, CROP_PX, CROP_PX, 3), tf.uint8),
        tf.TensorSpec((config.bag,), tf.float32),
        tf.TensorSpec((), tf.int64),
        tf.TensorSpec((), tf.float32),
    )

    def prepare(crops: tf.Tensor, mask: tf.Tensor, label: tf.Tensor, weight: tf.Tensor) -> Any:
        x = tf.cast(crops, tf.float32) / 255.0
        if training:
            x = augment_bag(x, config)
        return (x, mask), tf.one_hot(label, N_CLASSES), weight

    ds = tf.data.Dataset.from_generator(fields, output_signature=signature)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def fit_cell_model(
    config: CellTrainConfig, bags: Bags, train: np.ndarray, val: np.ndarray
) -> tuple[keras.Model, dict[str, list[float]], float]:
    """Train ``config.model``'s cell network on the train fields, stopping on the val fields
    (every epoch when there are none): the cell model, its history and the seconds it took."""
    keras.utils.set_random_seed(config.seed)
    cell_model = architecture(config.model).build()
    network = mil_network(cell_model, config.bag)
    steps = max(1, int(np.ceil(len(train) / config.batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps * config.epochs)
    network.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(),
        weighted_metrics=["accuracy"],
    )
    # Without validation fields the cosine schedule runs to its end.
    validating = len(val) > 0
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=config.early_stopping_patience,
        restore_best_weights=True,
        start_from_epoch=config.epochs // 2,
    )
    started = time.perf_counter()
    history = network.fit(
        bag_dataset(bags, train, config, training=True),
        validation_data=bag_dataset(bags, val, config, training=False) if validating else None,
        epochs=config.epochs,
        callbacks=[stop] if validating else [],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    seconds = time.perf_counter() - started
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    return cell_model, hist, seconds


@dataclass(frozen=True)
class FieldOutputs:
    """A field's pooled logits (None without cells) and its cells' logits and scores."""

    logits: np.ndarray | None
    cell_logits: np.ndarray
    cell_scores: np.ndarray


def field_outputs(
    cell_model: keras.Model, bags: Bags, indices: np.ndarray, views: int = 1
) -> list[FieldOutputs]:
    """Every cell of the fields through the cell model, pooled per field (``pool``); with
    ``views`` over 1, each cell's logits and attention score are the mean over that many of
    its flips and quarter turns (``orientations``; a cell has no up or down)."""
    parts = [bags.cells(int(i)) for i in indices]
    crops = np.concatenate(parts) if parts else np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8)
    runs = [_run(cell_model, np.ascontiguousarray(v)) for v in orientations(crops, views)]
    logits = np.mean([r[0] for r in runs], axis=0)
    scores = np.mean([r[1] for r in runs], axis=0)
    out, start = [], 0
    for part in parts:
        end = start + len(part)
        cell_logits, cell_scores = logits[start:end], scores[start:end]
        pooled = pool(cell_logits, cell_scores)[0] if len(part) else None
        out.append(FieldOutputs(pooled, cell_logits, cell_scores))
        start = end
    return out


def orientations(crops: np.ndarray, views: int) -> list[np.ndarray]:
    """Crops (n, S, S, 3) in the first ``views`` of their eight flips and quarter turns, as
    the served model turns them (``app.core.orientations.all_orientations``: k quarter
    turns, then the mirror of each): 1 is the crops as they are, 2 adds their mirror, 4 a
    quarter turn of both, 8 every one."""
    if views not in VIEW_COUNTS:
        raise ValueError(f"views must be one of {VIEW_COUNTS}, got {views}")
    if views == 1:
        return [crops]
    turned = np.asarray(all_orientations(tf.constant(crops)))
    return np.split(turned, ORIENTATIONS)[:views]


def _run(
    cell_model: keras.Model, crops: np.ndarray, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    logits, scores = [], []
    for start in range(0, len(crops), batch):
        x = crops[start : start + batch].astype(np.float32) / 255.0
        lg, sc = cell_model(x, training=False)
        logits.append(np.asarray(lg))
        scores.append(np.asarray(sc)[:, 0])
    if not logits:
        return np.zeros((0, N_CLASSES)), np.zeros(0)
    return np.concatenate(logits), np.concatenate(scores)
