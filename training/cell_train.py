"""Trains a cell model on the project's image split and writes it with its card.

The same train, validation and test photographs as the whole-field models
(``models/split.csv``): the cell model trains on the train fields, stops early and
is calibrated on the validation fields, and is scored on the test fields. Its
out-of-distribution guard is fitted like a field model's, on the field's pooled cell
features and the photograph's image statistics; its "uncertain" threshold on the
validation photographs and their capture variants. The held-out-patient figures
come from ``python -m training cell-blocks`` (``training.block_results.standing``).
"""

from __future__ import annotations

import hashlib
import logging
import platform
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from app.core.cells.crops import CROP_PX, CROP_UM
from app.core.cells.model import LoadedCellModel, load_cell_model
from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.core.model_card import (
    Calibration,
    InferenceSpec,
    ModelCard,
    OodSection,
    PatientBlocks,
    SplitManifestRef,
    TestMetrics,
)
from app.core.model_files import model_files
from app.core.preprocessing import load_image
from training.architectures import architecture
from training.block_results import standing
from training.blocks_report import patient_blocks
from training.calibration import fit_temperature
from training.cell_bags import Bags, load_bags
from training.cell_config import CellTrainConfig
from training.cell_guard import field_statistics_of, fit_cell_guard, photograph_answer
from training.cell_mil import fit_cell_model
from training.data import DataSetError, Sample, discover
from training.evaluate import select_split
from training.intended_use import for_card
from training.metrics import classification_report, expected_calibration_error
from training.perturbations import PERTURBATIONS
from training.reviewed_cells import read_labels, with_single_cells
from training.split import MANIFEST_NAME
from training.uncertain import UNCERTAIN_TARGET_ACCURACY, UNCERTAIN_WINDOW, choose_uncertain_below

MODEL_VERSION = "2.2.0"
log = logging.getLogger(__name__)

CELL_PREPROCESSING = {
    "decode": "Pillow, first frame, EXIF transpose, RGB",
    "scale": "red cells measured (app.core.scale.measure_cells) and the photograph resampled "
    "so they span 21.3 px; refused when they cannot be measured",
    "cells": "violet objects (app.core.cells.detect), split by watershed; excluded: cut by "
    "the border, in the scale-bar corner, too small, too large or ragged",
    "stain": "optical density over the background's white point, each channel scaled so the "
    "field's leukocytes have one reference mean (app.core.cells.stain)",
    "crops": f"{CROP_PX} px squares, about {CROP_UM:.0f} micrometres, slid inside the "
    "photograph (never padded); float32 in [0, 1]",
}


def _indices(samples: list[Sample], chosen: list[Sample]) -> np.ndarray:
    position = {s.sha256 + str(s.path): i for i, s in enumerate(samples)}
    return np.array([position[s.sha256 + str(s.path)] for s in chosen], np.int64)


def pooled(loaded: LoadedCellModel, bags: Bags, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Per field with cells: raw pooled logits, pooled features and the field's index."""
    keep = np.array([i for i in indices if bags.count(int(i)) > 0], np.int64)
    outputs = loaded.run(
        np.concatenate([bags.cells(int(i)) for i in keep]).astype(np.float32) / 255
    )
    logits, features, start = [], [], 0
    for i in keep:
        n = bags.count(int(i))
        answer = loaded.answer(outputs.part(start, start + n), calibrated=False)
        logits.append(np.log(np.maximum(answer.probabilities, 1e-12)))
        features.append(answer.features)
        start += n
    return {"logits": np.stack(logits), "features": np.stack(features), "index": keep}


def _photograph_probabilities(loaded: LoadedCellModel, image: Image.Image) -> np.ndarray | None:
    """Calibrated probabilities of one photograph through the cell path; None when refused."""
    answer = photograph_answer(loaded, image)
    return None if answer is None else answer.probabilities


def fit_cell_uncertain(loaded: LoadedCellModel, samples: list[Sample], val: np.ndarray) -> float:
    """``uncertain_below`` on the validation photographs and their capture variants."""
    confidence, correct = [], []
    for i in val:
        sample = samples[int(i)]
        image = load_image(sample.path)
        x = np.asarray(image, np.float32) / 255
        variants = [image] + [
            Image.fromarray((np.clip(fn(x), 0, 1) * 255 + 0.5).astype(np.uint8))
            for fn in PERTURBATIONS.values()
        ]
        for variant in variants:
            p = _photograph_probabilities(loaded, variant)
            if p is not None:
                confidence.append(float(p.max()))
                correct.append(int(np.argmax(p)) == sample.label)
    return choose_uncertain_below(np.array(confidence), np.array(correct))


def patient_blocks_of(models_dir: Path, name: str) -> PatientBlocks | None:
    """The held-out figures of the block run that stands for ``name``, when it has been run."""
    run = standing(models_dir, name)
    return patient_blocks(run) if run is not None else None


def train_cells(
    config: CellTrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    cache_dir: Path | None = None,
    extra_labels: Path | None = None,
    views: int = 1,
) -> ModelCard:
    """Train ``config.model`` on the committed split and write the model, card and guard;
    ``extra_labels``, an export of reviewed cells, adds each as a bag of one to the train
    split, labelled with the reviewer's class; ``views``, the orientations of each crop
    the served model averages (1 or 8)."""
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} is missing: train a whole-field model first")
    arch = architecture(config.model)
    samples = discover(data_dir)
    bags = load_bags(samples, cache_dir)
    index = {
        s: _indices(samples, select_split(samples, manifest, s)) for s in ("train", "val", "test")
    }
    fitted, train = bags, index["train"]
    if extra_labels is not None:
        fitted, extra = with_single_cells(bags, read_labels(extra_labels))
        train = np.concatenate([train, extra])
    network, history, seconds = fit_cell_model(config, fitted, train, index["val"])
    files = model_files(out, config.model)
    served = arch.build()
    served.set_weights(network.get_weights())
    served.save(files.weights)
    card = ModelCard(
        name=config.model,
        architecture=arch.display_name,
        description=arch.describe(),
        version=MODEL_VERSION,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        class_ids=list(CLASS_IDS),
        display_names={c: DISPLAY_NAMES[c] for c in CLASS_IDS},
        malignant={c: MALIGNANT[c] for c in CLASS_IDS},
        input_size=arch.input_size,
        preprocessing=dict(CELL_PREPROCESSING),
        unit="cell",
        training={
            **config.describe(),
            "epochs_run": len(history["loss"]),
            "best_epoch": int(np.argmin(history["val_loss"])) + 1,
            "seconds": round(seconds, 1),
            "n_train": int(len(index["train"])),
            "reviewed_cells": int(len(train) - len(index["train"])),
            "n_val": int(len(index["val"])),
            "cells_train": int(sum(bags.count(int(i)) for i in index["train"])),
        },
        split_manifest=SplitManifestRef(
            file=MANIFEST_NAME, sha256=hashlib.sha256(manifest.read_bytes()).hexdigest()
        ),
        parameters=int(served.count_params()),
        file_size_bytes=files.weights.stat().st_size,
        versions={
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        history=history,
        inference=InferenceSpec.for_views(views, unit="cell"),
    )
    card.save(files.card)
    return fit_served(card, out, samples, bags, index)


def set_cell_views(
    models_dir: str | Path,
    name: str,
    views: int,
    data_dir: str | Path,
    samples: list[Sample] | None = None,
    cache_dir: Path | None = None,
) -> ModelCard:
    """Make cell model ``name`` average ``views`` orientations of each crop, its weights
    kept; its temperature, test figures, guard and "uncertain" threshold are fitted and
    measured again on the new outputs."""
    out = Path(models_dir)
    manifest = out / MANIFEST_NAME
    card = ModelCard.load(model_files(out, name).card)
    samples = samples if samples is not None else discover(data_dir)
    chosen = {s: select_split(samples, manifest, s) for s in ("train", "val", "test")}
    # The data first: a folder without the split's photographs leaves the model as it was.
    for split, found in chosen.items():
        if not found:
            raise DataSetError(f"no image of {data_dir} is in the {split} split of {manifest}")
    bags = load_bags(samples, cache_dir)
    index = {s: _indices(samples, found) for s, found in chosen.items()}
    card.inference = InferenceSpec.for_views(views, unit="cell")
    # Same weights, different answers: a new model version.
    card.version = MODEL_VERSION
    card.save(model_files(out, name).card)
    return fit_served(card, out, samples, bags, index)


def fit_served(
    card: ModelCard,
    out: Path,
    samples: list[Sample],
    bags: Bags,
    index: dict[str, np.ndarray],
) -> ModelCard:
    """Everything fitted on a saved cell model's outputs, in its card's views: the
    temperature (validation), the test figures, the guard and the "uncertain" threshold,
    with the held-out-patient figures that stand for it; returns the card as written."""
    files = model_files(out, card.name)
    card.patient_blocks = patient_blocks_of(out, card.name)
    loaded = load_cell_model(out, card.name)
    data = {s: pooled(loaded, bags, index[s]) for s in index}
    y = {s: np.array([samples[int(i)].label for i in data[s]["index"]]) for s in data}
    temperature = fit_temperature(data["val"]["logits"], y["val"])
    raw = np.exp(data["test"]["logits"])
    scaled = np.exp(data["test"]["logits"] / temperature)
    calibrated = scaled / scaled.sum(axis=1, keepdims=True)
    card.calibration = Calibration(
        method="temperature scaling of the pooled field logits, fitted on the validation "
        "split (NLL)",
        temperature=round(temperature, 4),
        test_ece_before=round(
            expected_calibration_error(raw / raw.sum(axis=1, keepdims=True), y["test"]), 4
        ),
        test_ece_after=round(expected_calibration_error(calibrated, y["test"]), 4),
    )
    report = classification_report(y["test"], calibrated)
    card.test_metrics = TestMetrics(**report)
    card.save(files.card)
    loaded.card = card  # its calibration for the guard and the uncertain rule, not reloaded
    for s in data:
        data[s]["stats"] = field_statistics_of(samples, data[s]["index"])
    card.ood = fit_cell_guard(out, loaded, samples, data)
    uncertain_below = fit_cell_uncertain(loaded, samples, index["val"])
    val_scaled = np.exp(data["val"]["logits"] / temperature)
    val_conf = (val_scaled / val_scaled.sum(axis=1, keepdims=True)).max(axis=1)
    test_conf = calibrated.max(axis=1)
    unsure = test_conf < uncertain_below
    right = calibrated.argmax(axis=1) == y["test"]
    card.calibration = replace(
        card.calibration,
        uncertain_below=round(uncertain_below, 4),
        uncertain_rule=(
            "a field is 'uncertain' when its calibrated top-class probability is below "
            f"uncertain_below: just above the most confident run of {UNCERTAIN_WINDOW} "
            f"neighbouring predictions right less than {UNCERTAIN_TARGET_ACCURACY:.0%} of the "
            "time, among the validation photographs and their capture variants ("
            + ", ".join(PERTURBATIONS)
            + ")"
        ),
        uncertain_val_rate=round(float((val_conf < uncertain_below).mean()), 4),
        uncertain_test_rate=round(float(unsure.mean()), 4),
        test_accuracy_when_confident=round(float(right[~unsure].mean()), 4)
        if (~unsure).any()
        else None,
        test_accuracy_when_uncertain=round(float(right[unsure].mean()), 4)
        if unsure.any()
        else None,
    )
    card.intended_use = for_card(card, out)
    card.save(files.card)
    log.info(
        "[%s] test accuracy %.4f, macro-F1 %.4f, T=%.3f",
        card.name,
        report["accuracy"],
        report["macro_f1"],
        temperature,
    )
    return ModelCard.load(files.card)


def refit_cell_guard(
    models_dir: str | Path,
    name: str,
    data_dir: str | Path,
    cache_dir: Path | None = None,
    samples: list[Sample] | None = None,
) -> OodSection:
    """Fit the guard of the trained cell model ``name`` again (after a change to the image
    statistics) and write it to its card; the network and its calibration are kept."""
    out = Path(models_dir)
    samples = samples if samples is not None else discover(data_dir)
    bags = load_bags(samples, cache_dir)
    manifest = out / MANIFEST_NAME
    loaded = load_cell_model(out, name)
    data = {}
    for s in ("train", "val", "test"):
        data[s] = pooled(loaded, bags, _indices(samples, select_split(samples, manifest, s)))
        data[s]["stats"] = field_statistics_of(samples, data[s]["index"])
    card = loaded.card
    card.ood = fit_cell_guard(out, loaded, samples, data)
    card.save(model_files(out, name).card)
    return card.ood
