"""One explanation of a prediction, whichever model made it: the segmented cells, a heat
map drawn over the photograph and as a layer, the outlines, and the time each step took."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from app.core.explanation.gradcam import heat_layer_png, overlay_png
from app.core.explanation.heat_share import heat_share
from app.core.explanation.segmentation import Segmentation, segment
from app.core.imaging import DISPLAY_SIDE, downscale
from app.core.prediction import Explanation, Prediction


def explain_with(
    prediction: Prediction,
    heat_of: Callable[[], np.ndarray],
    outline_of: Callable[[Image.Image, Segmentation], bytes],
) -> Prediction:
    """``prediction`` explained: ``heat_of`` gives the model's heat map, ``outline_of`` the
    outline PNG from the displayed photograph and its segmentation."""
    start = time.perf_counter()
    _, field_image = prediction.pixels()
    cells = segment(field_image)
    segmented = time.perf_counter()
    heat = heat_of()
    # Downscale a big photograph once for both pictures.
    shown = downscale(field_image, DISPLAY_SIDE)
    gradcam_png = overlay_png(shown, heat)
    heat_png = heat_layer_png(heat, shown.size)
    drawn = time.perf_counter()
    cells_png = outline_of(shown, cells)
    outlined = time.perf_counter()
    return prediction.with_explanation(
        Explanation(
            gradcam_class=prediction.class_id,
            gradcam_png=gradcam_png,
            cells=cells,
            cells_png=cells_png,
            heat_png=heat_png,
            heat_share=heat_share(heat, cells),
            segmentation_ms=(segmented - start) * 1000,
            gradcam_ms=(drawn - segmented) * 1000,
            outline_ms=(outlined - drawn) * 1000,
        )
    )
