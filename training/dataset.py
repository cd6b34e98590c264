"""Turns discovered samples into model-ready arrays and tf.data pipelines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from scipy import ndimage as ndi

from app.core.classes import CLASS_IDS
from app.core.explanation.segmentation import foreground_mask
from app.core.model_card import ScaleSpec
from training.augment import AUGMENTATION, AugmentProfile, augment_image, swap_backgrounds
from training.data import Sample, read_input
from training.progress import track

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


def load_arrays(
    samples: Sequence[Sample], input_size: int, scale: ScaleSpec | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every sample with the shared preprocessing: (N, S, S, 3) floats and labels."""
    x = np.empty((len(samples), input_size, input_size, 3), dtype=np.float32)
    for i, sample in enumerate(track(samples, f"decoding {len(samples)} images")):
        x[i] = read_input(sample, input_size, scale)
    y = np.array([sample.label for sample in samples], dtype=np.int64)
    return x, y


def cell_masks(x: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Soft leukocyte masks (N, S, S, 1) of preprocessed images (``foreground_mask``).

    Dilated by ``margin`` of the side and feathered, so cell borders and the
    cytoplasm rim stay with the cell when backgrounds are swapped.
    """
    size = x.shape[1]
    radius = max(1, round(margin * size))
    r = np.arange(-radius, radius + 1)
    disk = np.add.outer(r**2, r**2) <= radius**2
    out = np.empty(x.shape[:3] + (1,), np.float32)
    for i, image in enumerate(x):
        mask = ndi.binary_dilation(foreground_mask(image), disk)
        out[i, ..., 0] = np.clip(ndi.gaussian_filter(mask.astype(np.float32), radius / 2), 0, 1)
    return out


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    training: bool,
    seed: int,
    profile: AugmentProfile = AUGMENTATION,
) -> tf.data.Dataset:
    labels = tf.one_hot(y, len(CLASS_IDS))
    if not training:
        return (
            tf.data.Dataset.from_tensor_slices((x, labels))
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    if profile.background_swap_p > 0:
        ds = tf.data.Dataset.from_tensor_slices((x, cell_masks(x), labels))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        ds = ds.map(
            lambda img, m, lab: (swap_backgrounds(img, m, profile.background_swap_p), lab)
        ).unbatch()
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, labels))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda img, lab: (augment_image(img, profile), lab), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so the small Benign class counts as much as the others."""
    counts = np.bincount(y, minlength=len(CLASS_IDS))
    return {i: float(len(y) / (len(CLASS_IDS) * c)) for i, c in enumerate(counts) if c}
