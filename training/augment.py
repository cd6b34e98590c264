"""Training-time augmentation that attacks the data set's shortcuts.

Geometric (flips, 90-degree rotations, zoom) for orientation and magnification;
colour/stain jitter because the classes differ in stain tint and background;
random masking of the lower-right corner because the scale bar sits there.
"""

from __future__ import annotations

import tensorflow as tf

# Lower-right corner holding the scale bar, as fractions of width and height.
SCALE_BAR_BOX = (0.80, 0.88)  # x0, y0; the box runs to the image's right and bottom edges


def mask_scale_bar_tf(image: tf.Tensor) -> tf.Tensor:
    """Paint the scale-bar corner with the image's median-ish (mean) background colour."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    y0 = tf.cast(tf.cast(h, tf.float32) * SCALE_BAR_BOX[1], tf.int32)
    x0 = tf.cast(tf.cast(w, tf.float32) * SCALE_BAR_BOX[0], tf.int32)
    rows = tf.range(h)[:, None] >= y0
    cols = tf.range(w)[None, :] >= x0
    box = tf.logical_and(rows, cols)[:, :, None]
    fill = tf.reduce_mean(image[: y0, :, :], axis=[0, 1], keepdims=True)
    return tf.where(box, fill * tf.ones_like(image), image)


def augment_image(image: tf.Tensor) -> tf.Tensor:
    """One random augmentation of one float [0, 1] HxWx3 image."""
    size = tf.shape(image)[0]
    if tf.random.uniform(()) < 0.5:
        image = mask_scale_bar_tf(image)
    # Magnification: crop 80-100% of the side and resize back.
    frac = tf.random.uniform((), 0.80, 1.0)
    crop = tf.cast(tf.cast(size, tf.float32) * frac, tf.int32)
    image = tf.image.random_crop(image, tf.stack([crop, crop, 3]))
    image = tf.image.resize(image, tf.stack([size, size]), method="bilinear")
    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_flip_up_down(image)
    image = tf.image.rot90(image, k=tf.random.uniform((), 0, 4, dtype=tf.int32))
    # Stain and illumination.
    image = tf.image.random_hue(image, 0.05)
    image = tf.image.random_saturation(image, 0.6, 1.4)
    image = tf.image.random_brightness(image, 0.1)
    image = tf.image.random_contrast(image, 0.8, 1.2)
    image = image * tf.random.uniform((1, 1, 3), 0.9, 1.1)
    return tf.clip_by_value(image, 0.0, 1.0)
