"""Cross-validation of a whole-field model over patient blocks, as for the cell models.

The protocol of ``training.patient_proxy`` (the architecture's recipe, the scale fitted
on the fold's training part, one view), with every validation and held-out field's
probabilities recorded, so the report can put whole-field and cell models side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from training.blocks import fold_plans
from training.cell_cv import CrossValidation, record
from training.data import Sample
from training.dataset import load_arrays
from training.scale_fit import fit_scale
from training.train import TrainConfig, augmentation_for, fit_network

log = logging.getLogger(__name__)


def cross_validate_field(
    samples: Sequence[Sample], config: TrainConfig, input_size: int, k: int = 5
) -> CrossValidation:
    """Train and score ``config.model`` on each of the k block folds."""
    records, folds = [], []
    for plan in fold_plans(samples, k):
        parts = {
            role: [samples[int(i)] for i in indices]
            for role, indices in (("train", plan.train), ("val", plan.val), ("test", plan.test))
        }
        scale = fit_scale(parts["train"])
        arrays = {role: load_arrays(part, input_size, scale) for role, part in parts.items()}
        model, history, seconds = fit_network(
            config, augmentation_for(config.model), arrays["train"], arrays["val"]
        )
        for role in ("val", "test"):
            probabilities = model.predict(arrays[role][0], verbose=0)
            for sample, p in zip(parts[role], probabilities, strict=True):
                records.append(record(sample, plan.fold, role, p, None))
        x_test, y_test = arrays["test"]
        accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
        log.info("[%s] fold %d held-out accuracy %.4f", config.model, plan.fold + 1, accuracy)
        folds.append(
            {
                "fold": plan.fold,
                "epochs_run": len(history.history["loss"]),
                "best_epoch": int(np.argmin(history.history["val_loss"])) + 1,
                "seconds": round(seconds, 1),
                "held_out_accuracy": round(accuracy, 4),
            }
        )
    return CrossValidation(config.model, "field", k, asdict(config), folds, records)
