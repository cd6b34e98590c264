"""Agreement of the app's leukocyte segmentation with the data set's own (``segmented/``).

The data set's masks come from a colour threshold of their own and are noisy
(whole fields fail on some stains), so this is a consistency check, not an
accuracy figure: the per-class numbers and the worst images tell which of the
two fails where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.explanation.segmentation import segment
from app.core.preprocessing import load_image
from training.data import DataSetError, discover, resolve_image_root
from training.markdown import table
from training.progress import track

SEGMENTED_FOLDER = "segmented"
# Black background of the reference, with a margin for JPEG ringing around the kept cells.
REFERENCE_BLACK = 40
# A reference mask with less foreground than this found (almost) nothing.
REFERENCE_EMPTY_FRACTION = 0.01
N_WORST = 5  # per class


def reference_mask(path: str | Path) -> np.ndarray:
    """The data set's foreground mask: its non-black pixels."""
    pixels = np.asarray(load_image(path), dtype=np.uint8)
    return np.asarray(pixels.max(axis=2) > REFERENCE_BLACK)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _pairs(data_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(class id, photograph, reference mask) for every photograph that has a reference."""
    originals = resolve_image_root(data_dir)
    segmented = originals.parent / SEGMENTED_FOLDER
    if not segmented.is_dir():
        raise DataSetError(f"no {SEGMENTED_FOLDER}/ folder next to {str(originals)!r}")
    pairs = []
    for sample in discover(data_dir):
        reference = segmented / sample.path.relative_to(originals)
        if reference.is_file():
            pairs.append((sample.class_id, sample.path, reference))
    if not pairs:
        raise DataSetError(f"no photograph in {str(originals)!r} has a reference mask")
    return pairs


def _spread(pairs: list[tuple[str, Path, Path]], n: int) -> list[tuple[str, Path, Path]]:
    chosen = []
    for class_id in dict.fromkeys(c for c, _, _ in pairs):
        group = [p for p in pairs if p[0] == class_id]
        picks = np.unique(np.linspace(0, len(group) - 1, min(n, len(group))).round().astype(int))
        chosen += [group[i] for i in picks]
    return chosen


def agreement(data_dir: str | Path, limit_per_class: int | None = None) -> dict[str, Any]:
    """Mean IoU of our mask against the reference over all shared images, overall and per class.

    ``limit_per_class`` takes N images of each class, spread evenly over its files
    (neighbouring files often come from one patient and one stain), for quick checks.
    Also reports how many references are (nearly) empty, the mean IoU without
    them, and per class the images with the lowest IoU, for inspection.
    """
    pairs = _pairs(data_dir)
    if limit_per_class is not None:
        pairs = _spread(pairs, limit_per_class)
    rows: list[dict[str, Any]] = []
    for class_id, photo, reference in track(pairs, f"segmenting {len(pairs)} images"):
        ours = segment(load_image(photo))
        ref = reference_mask(reference)
        if ref.shape != ours.mask.shape:
            raise DataSetError(
                f"{reference} is {ref.shape[::-1]}, its photograph is {ours.mask.shape[::-1]}"
            )
        score = iou(ours.mask, ref)
        rows.append(
            {
                "file": f"{photo.parent.name}/{photo.name}",
                "class": class_id,
                "iou": round(score, 4),
                "ours_fraction": round(ours.foreground_fraction, 4),
                "reference_fraction": round(float(ref.mean()), 4),
                "cells": ours.count,
            }
        )
    all_scores = [r["iou"] for r in rows]
    ordered = [c for c in CLASS_IDS if any(r["class"] == c for r in rows)]
    return {
        "n_images": len(rows),
        "mean_iou": _mean(rows),
        "median_iou": round(float(np.median(all_scores)), 4),
        # Where the reference found (almost) nothing, the IoU only measures its failure.
        "mean_iou_reference_not_empty": _mean([r for r in rows if not _empty(r)]),
        "per_class": {c: _class_summary([r for r in rows if r["class"] == c]) for c in ordered},
        "reference_empty_fraction": REFERENCE_EMPTY_FRACTION,
        "worst": {
            c: sorted((r for r in rows if r["class"] == c), key=lambda r: r["iou"])[:N_WORST]
            for c in ordered
        },
    }


def _empty(row: dict[str, Any]) -> bool:
    return bool(row["reference_fraction"] < REFERENCE_EMPTY_FRACTION)


def _mean(rows: list[dict[str, Any]]) -> float | None:
    return round(float(np.mean([r["iou"] for r in rows])), 4) if rows else None


def _class_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "n_images": len(rows),
        "mean_iou": _mean(rows),
        "median_iou": round(float(np.median([r["iou"] for r in rows])), 4),
        "reference_empty": sum(_empty(r) for r in rows),
        "mean_iou_reference_not_empty": _mean([r for r in rows if not _empty(r)]),
    }


def agreement_markdown(result: dict[str, Any]) -> str:
    """A short models/REPORT.md section for an ``agreement`` result."""
    not_empty = result["mean_iou_reference_not_empty"]
    lines = [
        "## Leukocyte segmentation",
        "",
        "The app outlines leukocytes with a colour threshold (Otsu on CIE-LAB a*, bluish "
        "pixels only), morphology and a watershed split of touching cells "
        "(`app/core/explanation/segmentation.py`). Agreement with the data set's own segmentation "
        f"(`segmented/`, its non-black pixels) over {result['n_images']} images: mean IoU "
        f"**{result['mean_iou']:.3f}** (median {result['median_iou']:.3f}); "
        + (
            f"{not_empty:.3f} without the images whose reference is (nearly) empty."
            if not_empty is not None
            else "every reference is (nearly) empty."
        ),
        "",
        table(
            [
                "class",
                "images",
                "mean IoU",
                "median IoU",
                "reference (nearly) empty",
                "mean IoU, reference not empty",
            ],
            [
                [
                    DISPLAY_NAMES.get(class_id, class_id),
                    row["n_images"],
                    f"{row['mean_iou']:.3f}",
                    f"{row['median_iou']:.3f}",
                    row["reference_empty"],
                    "-"
                    if row["mean_iou_reference_not_empty"] is None
                    else f"{row['mean_iou_reference_not_empty']:.3f}",
                ]
                for class_id, row in result["per_class"].items()
            ],
            align=["left", *["right"] * 5],
        ),
    ]
    lines += [
        "",
        "The reference is a noisy colour threshold, not a ground truth. A (nearly) empty "
        f"reference (< {result['reference_empty_fraction']:.0%} of the pixels) means it "
        "missed every cell of the field, so a low IoU there measures the reference's "
        "failure, not the app's.",
        "",
    ]
    return "\n".join(lines)
