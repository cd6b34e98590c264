"""Turns discovered samples into model-ready arrays and tf.data pipelines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from app.classes import CLASS_IDS
from training.augment import augment_image
from training.data import Sample, read_input


def load_arrays(samples: Sequence[Sample], input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode every sample with the shared preprocessing: (N, S, S, 3) floats and labels."""
    x = np.empty((len(samples), input_size, input_size, 3), dtype=np.float32)
    for i, sample in enumerate(samples):
        x[i] = read_input(sample, input_size)
    y = np.array([sample.label for sample in samples], dtype=np.int64)
    return x, y


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, training: bool,
                 seed: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, len(CLASS_IDS))))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda img, lab: (augment_image(img), lab),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so the small Benign class counts as much as the others."""
    counts = np.bincount(y, minlength=len(CLASS_IDS))
    return {i: float(len(y) / (len(CLASS_IDS) * c)) for i, c in enumerate(counts) if c}
