"""Test-time orientations: a smear photograph's eight flips and quarter turns.

A smear has no up or down, and the models are trained on flipped and rotated
images, so a model may score the eight orientations of an image (its "views")
and average them. A model's card says how many views it averages
(``inference.views``: 1 or 8); its logits, its OOD guard's features and its
Grad-CAM map all go through these functions, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from app.core.model_card import VIEW_DESCRIPTIONS

ORIENTATIONS = 8

TensorFn = Callable[[tf.Tensor], Any]


def check_views(views: int) -> int:
    if views not in VIEW_DESCRIPTIONS:
        raise ValueError(f"views must be one of {tuple(VIEW_DESCRIPTIONS)}, got {views!r}")
    return views


def all_orientations(x: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) -> (8B, H, W, C): orientation v of image b at row v * B + b.

    Orientation v is ``v // 2`` quarter turns, then a left-right flip when v is odd.
    """
    out = []
    for k in range(4):
        turned = tf.image.rot90(x, k)
        out += [turned, tf.image.flip_left_right(turned)]
    return tf.concat(out, axis=0)


def undo_orientations(maps: tf.Tensor) -> tf.Tensor:
    """Inverse of ``all_orientations`` for maps (8B, H, W, C): each back to the original frame."""
    parts = tf.split(maps, ORIENTATIONS, axis=0)
    out = []
    for v, part in enumerate(parts):
        if v % 2:
            part = tf.image.flip_left_right(part)
        out.append(tf.image.rot90(part, (4 - v // 2) % 4))
    return tf.concat(out, axis=0)


def mean_over_views(t: tf.Tensor, views: int) -> tf.Tensor:
    """(views * B, ...) -> (B, ...): the mean of each image's views."""
    if views == 1:
        return t
    shape = tf.shape(t)
    grouped = tf.reshape(t, tf.concat([[views, shape[0] // views], shape[1:]], axis=0))
    return tf.reduce_mean(grouped, axis=0)


def views_of(x: tf.Tensor, views: int) -> tf.Tensor:
    """The batch of views a model with ``views`` scores for the batch ``x``."""
    return all_orientations(x) if check_views(views) == ORIENTATIONS else x


def averaged_over_views(fn: TensorFn, views: int) -> TensorFn:
    """``fn`` (batch -> tensor or tuple of tensors), averaged over each image's views."""
    check_views(views)
    if views == 1:
        return fn

    def averaged(x: tf.Tensor) -> Any:
        out = fn(all_orientations(x))
        if isinstance(out, list | tuple):
            return type(out)(mean_over_views(t, views) for t in out)
        return mean_over_views(out, views)

    return averaged
