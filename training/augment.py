"""Training-time augmentation that attacks the data set's shortcuts.

Geometric (flips, 90-degree rotations, zoom) for orientation and magnification;
colour/stain jitter because the classes differ in stain tint and background;
random masking of the lower-right corner because the scale bar sits there;
optionally, swapped backgrounds, so only the leukocytes carry the label.
The models' StainNormalization layer (app/core/layers.py) removes global tint,
brightness, contrast and stain strength; the jitter covers what it cannot undo
(hue, per-pixel saturation changes, clipping).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

# Lower-right corner holding the scale bar, as fractions of width and height.
SCALE_BAR_BOX = (0.80, 0.88)  # x0, y0; the box runs to the image's right and bottom edges


@dataclass(frozen=True)
class AugmentProfile:
    mask_scale_bar_p: float = 0.5
    min_crop: float = 0.80
    hue: float = 0.03
    # Per-pixel effects only: StainNormalization undoes stain strength (docs/decisions.md).
    saturation: tuple[float, float] = (0.7, 1.3)
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.2)
    channel_gain: float = 0.05
    # Share of images given another image's background, so only the leukocytes carry the label.
    background_swap_p: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {"flips": True, "rot90": True, **asdict(self)}


AUGMENTATION = AugmentProfile()


def mask_scale_bar_tf(image: tf.Tensor) -> tf.Tensor:
    """Paint the scale-bar corner with the mean colour of the image above it."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    y0 = tf.cast(tf.cast(h, tf.float32) * SCALE_BAR_BOX[1], tf.int32)
    x0 = tf.cast(tf.cast(w, tf.float32) * SCALE_BAR_BOX[0], tf.int32)
    rows = tf.range(h)[:, None] >= y0
    cols = tf.range(w)[None, :] >= x0
    box = tf.logical_and(rows, cols)[:, :, None]
    fill = tf.reduce_mean(image[:y0, :, :], axis=[0, 1], keepdims=True)
    return tf.where(box, fill * tf.ones_like(image), image)


def swap_backgrounds(images: tf.Tensor, masks: tf.Tensor, p: float) -> tf.Tensor:
    """Give each image of a batch, with probability ``p``, its neighbour's background.

    ``masks`` are soft leukocyte masks (B, H, W, 1) in [0, 1]. Pixels that are cell
    in either image stay the image's own, so no foreign leukocyte (and no foreign
    label) is pasted in.
    """
    partner = tf.roll(images, 1, axis=0)
    keep = tf.maximum(masks, tf.roll(masks, 1, axis=0))
    swap = tf.cast(tf.random.uniform(tf.stack([tf.shape(images)[0], 1, 1, 1])) < p, tf.float32)
    own = keep + (1.0 - keep) * (1.0 - swap)
    return own * images + (1.0 - own) * partner


def augment_image(image: tf.Tensor, profile: AugmentProfile = AUGMENTATION) -> tf.Tensor:
    """One random augmentation of one float [0, 1] HxWx3 image."""
    size = tf.shape(image)[0]
    if tf.random.uniform(()) < profile.mask_scale_bar_p:
        image = mask_scale_bar_tf(image)
    if profile.min_crop < 1.0:  # magnification: crop part of the side and resize back
        frac = tf.random.uniform((), profile.min_crop, 1.0)
        crop = tf.cast(tf.cast(size, tf.float32) * frac, tf.int32)
        image = tf.image.random_crop(image, tf.stack([crop, crop, 3]))
        image = tf.image.resize(image, tf.stack([size, size]), method="bilinear")
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_flip_up_down(image)
    image = tf.image.rot90(image, k=tf.random.uniform((), 0, 4, dtype=tf.int32))
    if profile.hue:
        image = tf.image.random_hue(image, profile.hue)
    if profile.saturation != (1.0, 1.0):
        image = tf.image.random_saturation(image, *profile.saturation)
    if profile.brightness:
        image = tf.image.random_brightness(image, profile.brightness)
    if profile.contrast != (1.0, 1.0):
        image = tf.image.random_contrast(image, *profile.contrast)
    if profile.channel_gain:
        g = profile.channel_gain
        image = image * tf.random.uniform((1, 1, 3), 1.0 - g, 1.0 + g)
    return tf.clip_by_value(image, 0.0, 1.0)
