"""Cross-validation of a cell model over patient blocks (``training.blocks``).

Each fold trains the cell model on its training blocks, stops on its validation
block, and records the pooled probabilities of every validation and held-out
field. Choices are made on the validation records; the held-out ones are reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.classes import CLASS_IDS
from app.core.model_store import softmax
from training.architectures import architecture
from training.block_results import run_stem
from training.blocks import fold_plans, relative_file, summarise
from training.cell_bags import Bags
from training.cell_config import CellTrainConfig
from training.cell_mil import field_outputs, fit_cell_model
from training.data import Sample
from training.paths import BLOCKS_RESULTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrossValidation:
    model: str
    unit: str
    k: int
    config: dict[str, Any]
    folds: list[dict[str, Any]]
    records: list[dict[str, Any]]
    views: int = 1
    # True when each fold trained on its validation block too, for a fixed number of epochs.
    validation_trained: bool = False
    # Blocks each fold trained on, when fewer than the protocol's (a learning curve).
    training_blocks: int | None = None

    def save(self, models_dir: Path, samples: Sequence[Sample]) -> Path:
        """``models/blocks/<model>.json`` (``<model>.views<N>.json`` when each cell was scored
        as the mean of N of its orientations, ``<model>.trainval.json`` when the validation
        blocks trained too, ``<model>.train<N>.json`` when each fold trained on N blocks only)
        with both roles' figures and every record."""
        name = run_stem(self.model, self.views)
        name += ".trainval" if self.validation_trained else ""
        name += f".train{self.training_blocks}" if self.training_blocks else ""
        out = models_dir / BLOCKS_RESULTS / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "model": self.model,
            "unit": self.unit,
            "k": self.k,
            "views": self.views,
            "held_out": summarise(self.records, samples, "test"),
            "validation": None
            if self.validation_trained
            else summarise(self.records, samples, "val"),
            "validation_trained": self.validation_trained,
            "training_blocks": self.training_blocks or self.k - 2 + self.validation_trained,
            "config": self.config,
            "folds": self.folds,
        }
        # One record a line: the file stays small enough to read and to diff.
        lines = ",\n".join(json.dumps(r, separators=(",", ":")) for r in self.records)
        head = json.dumps(summary, indent=1)[:-2]
        out.write_text(f'{head},\n "records": [\n{lines}\n ]\n}}\n')
        return out


def record(
    sample: Sample, fold: int, role: str, probabilities: np.ndarray | None, cells: int | None
) -> dict[str, Any]:
    """One field's outcome in one fold: None probabilities when it had nothing to answer."""
    return {
        "file": relative_file(sample),
        "class_id": sample.class_id,
        "fold": fold,
        "role": role,
        "cells": cells,
        "probabilities": None
        if probabilities is None
        else [round(float(p), 5) for p in probabilities],
    }


def cross_validate_cells(
    samples: Sequence[Sample],
    bags: Bags,
    config: CellTrainConfig,
    k: int = 5,
    views: Sequence[int] = (1,),
    train_on_validation: bool = False,
    training_blocks: int | None = None,
) -> list[CrossValidation]:
    """Train and score ``config.model`` on each of the k block folds: scored on each cell as
    it is, and on the mean of each further count of its orientations in ``views`` (a result
    for each, from the same trained folds). With ``train_on_validation`` each fold trains on
    its four other blocks for all ``config.epochs``, and only the held-out block is scored;
    ``training_blocks`` trains each fold on fewer blocks (``blocks.fold_plans``)."""
    counts = sorted({1, *views})
    scored: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    records = scored[1]
    folds = []
    plans = fold_plans(samples, k, not train_on_validation, training_blocks)
    for plan in plans:
        log.info(
            "[%s] fold %d of %d: train %d, val %d, held out %d fields",
            config.model,
            plan.fold + 1,
            k,
            len(plan.train),
            len(plan.val),
            len(plan.test),
        )
        model, history, seconds = fit_cell_model(config, bags, plan.train, plan.val)
        for role, indices in (("val", plan.val), ("test", plan.test)):
            if not len(indices):
                continue
            for n, into in scored.items():
                outputs = field_outputs(model, bags, indices, n)
                for i, out in zip(indices, outputs, strict=True):
                    probabilities = None if out.logits is None else softmax(out.logits[None])[0]
                    into.append(
                        record(samples[i], plan.fold, role, probabilities, bags.count(int(i)))
                    )
        held = [r for r in records if r["fold"] == plan.fold and r["role"] == "test"]
        accuracy = np.mean(
            [
                r["probabilities"] is not None
                and CLASS_IDS[int(np.argmax(r["probabilities"]))] == r["class_id"]
                for r in held
            ]
        )
        log.info("[%s] fold %d held-out accuracy %.4f", config.model, plan.fold + 1, accuracy)
        folds.append(
            {
                "fold": plan.fold,
                "epochs_run": len(history["loss"]),
                "best_epoch": int(np.argmin(history["val_loss"])) + 1
                if "val_loss" in history
                else None,
                "seconds": round(seconds, 1),
                "held_out_accuracy": round(float(accuracy), 4),
            }
        )
    unit, described = architecture(config.model).unit, config.describe()
    return [
        CrossValidation(
            config.model, unit, k, described, folds, into, n, train_on_validation, training_blocks
        )
        for n, into in scored.items()
    ]
