"""Where the models look: the share of Grad-CAM heat on the segmented leukocytes.

A model that reads cell morphology puts its heat on the leukocytes; one that
reads the smear's look (red cells, background, the scale bar) puts it elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.explanation.gradcam import GradCam
from app.core.explanation.heat_share import heat_share
from app.core.explanation.segmentation import Segmentation, segment
from app.core.model_store import LoadedModel
from app.core.preprocessing import load_image, to_model_input
from training.augment import SCALE_BAR_BOX
from training.data import Sample
from training.markdown import table
from training.progress import track

PER_CLASS = 10


def heat_shares(
    cam: GradCam, image: Image.Image, cells: Segmentation | None = None
) -> tuple[float, float, float] | None:
    """Shares of the top class's heat on the (widened) leukocytes and in the scale-bar
    corner, and the share of the image the widened leukocytes cover; None without heat.

    The cell share is the served result page's (``app.core.explanation.heat_share``);
    ``cells`` is ``segment(image)``, passed in when several models share it.
    """
    heat, _, _ = cam.heatmap_top(to_model_input(image, cam.input_size))
    share = heat_share(heat, segment(image) if cells is None else cells)
    if share is None:
        return None
    heat = np.clip(np.asarray(Image.fromarray(heat).resize(image.size)), 0.0, None)
    h, w = heat.shape
    corner = heat[int(h * SCALE_BAR_BOX[1]) :, int(w * SCALE_BAR_BOX[0]) :].sum()
    return share.on_cells, float(corner / heat.sum()), share.cells_area


def spread(samples: Sequence[Sample], per_class: int) -> list[Sample]:
    """``per_class`` samples of each class, spread over its sorted files (neighbouring
    files come from one patient and share a stain)."""
    picked: list[Sample] = []
    for label in range(len(CLASS_IDS)):
        of_class = sorted((s for s in samples if s.label == label), key=lambda s: s.path)
        if of_class:
            idx = np.linspace(0, len(of_class) - 1, min(per_class, len(of_class)))
            picked += [of_class[i] for i in np.unique(idx.round().astype(int))]
    return picked


def summarise(found: list[tuple[int, tuple[float, float, float] | None]]) -> dict[str, Any]:
    """Mean shares overall and per class, how many images have most heat on cells, and
    how many have an empty map (no part of the image raised the class's score)."""

    def stats(rows: list[tuple[float, float, float]]) -> dict[str, Any]:
        if not rows:
            return {"n": 0}
        arr = np.array(rows)
        return {
            "n": len(rows),
            "on_cells": float(arr[:, 0].mean()),
            "corner": float(arr[:, 1].mean()),
            "cell_area": float(arr[:, 2].mean()),
            "majority_on_cells": float((arr[:, 0] > 0.5).mean()),
        }

    out: dict[str, Any] = {
        "overall": stats([r for _, r in found if r is not None]),
        "empty_maps": sum(r is None for _, r in found),
        "n_images": len(found),
    }
    out["per_class"] = {
        c: stats([r for lab, r in found if lab == i and r is not None])
        for i, c in enumerate(CLASS_IDS)
    }
    return out


def measure(
    models: Sequence[LoadedModel],
    samples: Sequence[Sample],
    per_class: int = PER_CLASS,
    layer: str | None = None,
) -> dict[str, Any]:
    """Heat shares of each model on ``per_class`` images of each class of ``samples``.

    ``layer`` explains every model at that layer instead of its automatic choice.
    """
    # Decoded and segmented once; every model is scored on the same images and masks.
    picked = spread(samples, per_class)
    images = [(s.label, load_image(s.path)) for s in picked]
    shown = [(label, image, segment(image)) for label, image in images]
    results = {}
    for model in models:
        cam = GradCam(model, layer_name=layer)
        found = [
            (label, heat_shares(cam, image, cells))
            for label, image, cells in track(shown, f"Grad-CAM heat of {model.name}")
        ]
        results[model.name] = {
            "architecture": model.card.architecture,
            "layer": cam.layer_name,
            **summarise(found),
        }
    return results


def heat_markdown(results: dict[str, Any], split: str = "test", per_class: int = PER_CLASS) -> str:
    header = [
        "model",
        "layer",
        "empty maps",
        "heat on cells",
        "cells' area",
        "images with most heat on cells",
        *(f"on cells: {DISPLAY_NAMES[c]}" for c in CLASS_IDS),
        "scale-bar corner",
    ]
    rows = []
    nan = float("nan")  # a model whose every map is empty has no shares
    for r in results.values():
        o = r["overall"]
        per = [f"{r['per_class'][c].get('on_cells', float('nan')):.3f}" for c in CLASS_IDS]
        rows.append(
            [
                r["architecture"],
                f"`{r['layer']}`",
                f"{r['empty_maps']} of {r['n_images']}",
                f"{o.get('on_cells', nan):.3f}",
                f"{o.get('cell_area', nan):.3f}",
                f"{100 * o.get('majority_on_cells', nan):.0f}%",
                *per,
                f"{o.get('corner', nan):.3f}",
            ]
        )
    return "\n".join(
        [
            "## Where the models look (Grad-CAM)",
            "",
            "Share of the predicted class's Grad-CAM heat on the segmented leukocytes (mask "
            "widened by 4 px per 224 px of side, as on the result page) and in the scale-bar "
            f"corner, on {per_class} {split} images per class; *cells' area* is the share of "
            "the image the widened leukocytes cover. "
            "A model reading cell morphology would put most of its heat (> 0.5) on them. "
            "*Empty maps*: images where no part of the image raised the predicted class's "
            "score, so the heatmap shows nothing (left out of the means).",
            "",
            table(header, rows),
        ]
    )
