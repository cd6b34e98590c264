"""Scores committed models on a folder of labelled images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.core.classes import CLASS_IDS
from app.core.model_store import LoadedModel
from training.data import Sample
from training.dataset import load_arrays
from training.metrics import classification_report
from training.split import read_manifest


def evaluate_model(
    model: LoadedModel,
    samples: list[Sample],
    perturb: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``samples``, optionally after a perturbation of each input."""
    x, y = load_arrays(samples, model.input_size, model.card.scale)
    if perturb is not None:
        x = np.stack([perturb(img) for img in x])
    report = classification_report(y, model.predict(x))
    return {"model": model.name, "version": model.version, **report}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"model {result['model']} (version {result['version']}): {result['n_images']} images",
        f"  accuracy  {result['accuracy']:.4f}",
        f"  macro-F1  {result['macro_f1']:.4f}",
        f"  {'class':<12} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for class_id in CLASS_IDS:
        c = result["per_class"][class_id]
        lines.append(
            f"  {class_id:<12} {c['precision']:>9.4f} {c['recall']:>7.4f} "
            f"{c['f1']:>7.4f} {c['support']:>8d}"
        )
    lines.append("  confusion matrix (rows true, columns predicted: " + ", ".join(CLASS_IDS) + ")")
    lines += ["    " + " ".join(f"{v:>5d}" for v in row) for row in result["confusion_matrix"]]
    return "\n".join(lines)


def select_split(samples: list[Sample], manifest: Path, split: str) -> list[Sample]:
    """The samples the manifest puts in ``split`` (matched by content, not by file name)."""
    assignment = read_manifest(manifest)
    return [s for s in samples if assignment.get(s.sha256) == split]
