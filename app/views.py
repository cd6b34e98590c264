"""Test-time views: a smear photograph's eight flips and quarter turns.

A smear has no up or down, and the models are trained on flipped and rotated
images, so a model may score the eight orientations of an image and average
them. The mean is steadier than any one view. A model's metadata says whether it
does (``inference.views``); the logits, the OOD guard's features and the
Grad-CAM map all go through these functions, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

DIHEDRAL = 8
SUPPORTED = (1, DIHEDRAL)
DESCRIPTIONS = {
    1: "the image as it is",
    DIHEDRAL: "mean of the logits (and OOD features) over the image's 8 flips and "
              "90-degree rotations",
}


def check_views(views: int) -> int:
    if views not in SUPPORTED:
        raise ValueError(f"views must be one of {SUPPORTED}, got {views!r}")
    return views


def dihedral_views(x: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) -> (8B, H, W, C): view v of image b at row v * B + b.

    View v is ``v // 2`` quarter turns, then a left-right flip when v is odd.
    """
    out = []
    for k in range(4):
        turned = tf.image.rot90(x, k)
        out += [turned, tf.image.flip_left_right(turned)]
    return tf.concat(out, axis=0)


def undo_dihedral_views(maps: tf.Tensor) -> tf.Tensor:
    """Inverse of ``dihedral_views`` for maps (8B, H, W, C): each back to the original frame."""
    parts = tf.split(maps, DIHEDRAL, axis=0)
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


def expand(x: tf.Tensor, views: int) -> tf.Tensor:
    """The batch of views a model with ``views`` scores for the batch ``x``."""
    return dihedral_views(x) if check_views(views) == DIHEDRAL else x


def over_views(fn: Callable, views: int) -> Callable:
    """``fn`` (batch -> tensor or tuple of tensors), averaged over each image's views."""
    check_views(views)
    if views == 1:
        return fn

    def averaged(x: tf.Tensor):
        out = fn(dihedral_views(x))
        if isinstance(out, list | tuple):
            return type(out)(mean_over_views(t, views) for t in out)
        return mean_over_views(out, views)

    return averaged
