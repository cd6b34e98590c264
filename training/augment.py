"""Training-time augmentation that attacks the data set's shortcuts.

Geometric (flips, 90-degree rotations, zoom) for orientation and magnification;
colour/stain jitter because the classes differ in stain tint and background;
random masking of the lower-right corner because the scale bar sits there;
optionally, swapped backgrounds, so only the leukocytes carry the label;
capture conditions (JPEG, blur and defocus, sensor noise, a wider field, colour
temperature, vignetting), so another camera, objective or phone is not news.
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
    # Capture conditions, each applied to this share of the images.
    capture_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    max_blur_sigma: float = 1.5  # pixels of the training photograph (224 px field)
    max_noise: float = 0.03
    min_zoom_out: float = 0.75  # a wider field, its margins mirrored
    temperature: float = 0.15  # red up and blue down by this much at most, or the reverse
    max_vignette: float = 0.4  # darkening of the corners

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


def _maybe(p: float) -> tf.Tensor:
    return tf.random.uniform(()) < p


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Blur an HxWx3 image with a Gaussian of ``sigma`` pixels (a 9-tap separable kernel)."""
    taps = tf.range(-4.0, 5.0)
    kernel = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigma, 1e-3)))
    kernel /= tf.reduce_sum(kernel)
    batch = image[None]
    rows = tf.tile(tf.reshape(kernel, (9, 1, 1, 1)), (1, 1, 3, 1))
    cols = tf.tile(tf.reshape(kernel, (1, 9, 1, 1)), (1, 1, 3, 1))
    batch = tf.pad(batch, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="SYMMETRIC")
    batch = tf.nn.depthwise_conv2d(batch, rows, [1, 1, 1, 1], "VALID")
    batch = tf.nn.depthwise_conv2d(batch, cols, [1, 1, 1, 1], "VALID")
    return batch[0]


def zoom_out(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """A wider field: the image shrunk by ``factor`` and its margins mirrored."""
    size = tf.shape(image)[0]
    small = tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32)
    shrunk = tf.image.resize(image, tf.stack([small, small]), method="area")
    before = (size - small) // 2
    after = size - small - before
    return tf.pad(shrunk, [[before, after], [before, after], [0, 0]], mode="SYMMETRIC")


def vignette(image: tf.Tensor, strength: tf.Tensor) -> tf.Tensor:
    """Darken towards the corners, as an eyepiece or a misaligned lamp does."""
    size = tf.shape(image)[0]
    axis = tf.linspace(-1.0, 1.0, size)
    r2 = tf.square(axis)[:, None] + tf.square(axis)[None, :]
    return image * (1.0 - strength * tf.clip_by_value(r2 / 2.0, 0.0, 1.0))[..., None]


def capture_conditions(image: tf.Tensor, profile: AugmentProfile) -> tf.Tensor:
    """Another camera, objective or phone: each condition on ``capture_p`` of the images."""
    p = profile.capture_p
    scale = tf.cast(tf.shape(image)[0], tf.float32) / 224.0  # blur is set in 224 px units
    if profile.min_zoom_out < 1.0 and _maybe(p):
        image = zoom_out(image, tf.random.uniform((), profile.min_zoom_out, 1.0))
    if profile.max_vignette and _maybe(p):
        image = vignette(image, tf.random.uniform((), 0.0, profile.max_vignette))
    if profile.temperature and _maybe(p):
        t = tf.random.uniform((), -profile.temperature, profile.temperature)
        image = image * tf.stack([1.0 + t, 1.0, 1.0 - t])
    if profile.max_blur_sigma and _maybe(p):
        sigma = tf.random.uniform((), 0.3, profile.max_blur_sigma) * scale
        image = gaussian_blur(image, sigma)
    image = tf.clip_by_value(image, 0.0, 1.0)
    if profile.max_noise and _maybe(p):
        image += tf.random.normal(
            tf.shape(image), stddev=tf.random.uniform((), 0, profile.max_noise)
        )
        image = tf.clip_by_value(image, 0.0, 1.0)
    if profile.capture_p and _maybe(p):
        image = tf.image.random_jpeg_quality(image, *profile.jpeg_quality)
    return image


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
    image = tf.clip_by_value(image, 0.0, 1.0)
    if profile.capture_p > 0:
        image = capture_conditions(image, profile)
    return image
