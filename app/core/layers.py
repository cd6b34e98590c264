"""Custom Keras layers the committed models contain.

Lives in the core because loading a model needs the layer's class registered,
and the app never imports the training package.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "all_screen"


@keras.saving.register_keras_serializable(package=PACKAGE)
class StainNormalization(keras.layers.Layer):  # type: ignore[misc]
    """Per-image colour normalisation, so a model cannot read the lab's stain.

    1. Grey world: each channel divided by its image mean removes a global tint,
       i.e. any per-channel gain (warmer/cooler stain, white balance).
    2. The image is split into luminance (channel mean) and chroma (the rest).
       Luminance is standardised (removes brightness and contrast); chroma is
       divided by its RMS, which removes paler or stronger staining: a
       desaturation scales chroma by one factor.
    The output is luminance + chroma per channel, still three channels.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x: Any) -> Any:
        eps = self.epsilon
        x = x / (ops.mean(x, axis=(1, 2), keepdims=True) + eps)
        lum = ops.mean(x, axis=-1, keepdims=True)
        chroma = x - lum
        lum = lum - ops.mean(lum, axis=(1, 2, 3), keepdims=True)
        lum = lum / ops.sqrt(ops.mean(ops.square(lum), axis=(1, 2, 3), keepdims=True) + eps)
        chroma = chroma / ops.sqrt(
            ops.mean(ops.square(chroma), axis=(1, 2, 3), keepdims=True) + eps
        )
        return lum + chroma

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}
