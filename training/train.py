"""Trains one architecture and writes the model, its card and its figures."""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.core.model_card import (
    Calibration,
    InferenceSpec,
    ModelCard,
    SplitManifestRef,
    TestMetrics,
)
from app.core.model_files import model_files
from app.core.model_store import load_model, softmax
from app.core.preprocessing import PREPROCESSING_SPEC, SCALED_RESIZE
from training import plots
from training.architectures import architecture
from training.augment import AUGMENTATION, AugmentProfile
from training.calibration import fit_temperature
from training.data import Sample, discover, resolve_image_root
from training.dataset import Arrays, class_weights, load_arrays, make_dataset
from training.intended_use import for_card
from training.metrics import classification_report, expected_calibration_error
from training.ood import fit_ood
from training.scale_fit import fit_scale
from training.split import MANIFEST_NAME, assign_splits, write_manifest

MODEL_VERSION = "1.4.0"
log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: str
    epochs: int = 40
    batch_size: int = 32
    seed: int = 42
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    dropout: float | None = None  # None: the architecture's own
    early_stopping_patience: int = 10
    class_weighting: str = "inverse frequency"
    lr_schedule: str = "cosine decay over all epochs"
    early_stopping: str = (
        "on validation loss from the second half of the epochs on, best weights restored"
    )


def split_samples(
    samples: list[Sample], seed: int
) -> tuple[dict[str, list[Sample]], dict[str, str]]:
    assignment = assign_splits(samples, seed=seed)
    parts: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for s in samples:
        parts[assignment[s.sha256]].append(s)
    return parts, assignment


def augmentation_for(model: str, **overrides: object) -> AugmentProfile:
    """The shared augmentation with the architecture's own settings and ``overrides``."""
    return replace(AUGMENTATION, **{**architecture(model).augmentation, **overrides})


def fit_network(
    config: TrainConfig,
    augmentation: AugmentProfile,
    train_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray],
) -> tuple[Any, Any, float]:
    """Build ``config.model`` and fit it: the network, its history and the seconds it took."""
    arch = architecture(config.model)
    x_train, y_train = train_xy
    x_val, y_val = val_xy
    model = arch.build(config.dropout)
    steps = max(1, int(np.ceil(len(y_train) / config.batch_size)))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps * config.epochs)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    # Watched only in the second half: the validation loss jumps about under the
    # high early learning rate, and stopping then ends runs far too early.
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=config.early_stopping_patience,
            restore_best_weights=True,
            start_from_epoch=config.epochs // 2,
        )
    ]
    started = time.perf_counter()
    history = model.fit(
        make_dataset(x_train, y_train, config.batch_size, True, config.seed, augmentation),
        validation_data=make_dataset(x_val, y_val, config.batch_size, False, config.seed),
        epochs=config.epochs,
        class_weight=class_weights(y_train),
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    training_seconds = time.perf_counter() - started

    return model, history, training_seconds


def train(
    config: TrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    samples: list[Sample] | None = None,
    augmentation: AugmentProfile | None = None,
) -> ModelCard:
    """Train ``config.model`` on ``data_dir`` and write every artifact to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    arch = architecture(config.model)
    dropout = arch.dropout if config.dropout is None else config.dropout
    config = replace(config, dropout=dropout)
    augmentation = augmentation or augmentation_for(config.model)

    root = resolve_image_root(data_dir)
    samples = samples if samples is not None else discover(root)
    parts, assignment = split_samples(samples, config.seed)
    manifest_sha = write_manifest(samples, assignment, root, out / MANIFEST_NAME)
    scale = fit_scale(parts["train"])
    arrays = {k: load_arrays(v, arch.input_size, scale) for k, v in parts.items()}
    x_train, y_train = arrays["train"]
    x_val, y_val = arrays["val"]
    log.info(
        "[%s] train %d, val %d, test %d images at %dx%d",
        config.model,
        len(y_train),
        len(y_val),
        len(arrays["test"][1]),
        arch.input_size,
        arch.input_size,
    )

    model, history, training_seconds = fit_network(
        config, augmentation, (x_train, y_train), (x_val, y_val)
    )

    files = model_files(out, config.model)
    # An uncompiled copy: the optimizer's state would triple the file and is never served.
    served = arch.build(config.dropout)
    served.set_weights(model.get_weights())
    served.save(files.weights)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    card = ModelCard(
        name=config.model,
        architecture=arch.display_name,
        description=arch.describe(config.dropout),
        version=MODEL_VERSION,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        class_ids=list(CLASS_IDS),
        display_names={c: DISPLAY_NAMES[c] for c in CLASS_IDS},
        malignant={c: MALIGNANT[c] for c in CLASS_IDS},
        input_size=arch.input_size,
        preprocessing={**PREPROCESSING_SPEC, **({"resize": SCALED_RESIZE} if scale else {})},
        scale=scale,
        inference=InferenceSpec.for_views(arch.views),
        training={
            **asdict(config),
            "augmentation": augmentation.describe(),
            "epochs_run": len(hist["loss"]),
            "best_epoch": int(np.argmin(hist["val_loss"])) + 1,
            "seconds": round(training_seconds, 1),
            "n_train": int(len(y_train)),
            "n_val": int(len(y_val)),
        },
        split_manifest=SplitManifestRef(file=MANIFEST_NAME, sha256=manifest_sha),
        parameters=int(model.count_params()),
        file_size_bytes=files.weights.stat().st_size,
        versions={
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        history=hist,
    )
    card.save(files.card)
    plots.training_curves(hist, arch.display_name, out / f"{config.model}.curves.png")
    calibrate_and_score(config.model, out, arrays)
    # Refit the OOD guard and the "uncertain" confidence for the new weights.
    fit_ood(out, config.model, data_dir, samples=samples)
    return ModelCard.load(files.card)


def calibrate_and_score(name: str, out: Path, arrays: Arrays) -> ModelCard:
    """Fit temperature on validation, score the test split, write metrics and figures.

    The "uncertain" threshold belongs to the old temperature, so it is cleared
    here; ``fit_ood`` fits it again.
    """
    loaded = load_model(out, name)
    x_val, y_val = arrays["val"]
    x_test, y_test = arrays["test"]
    temperature = fit_temperature(loaded.logits(x_val), y_val)
    test_logits = loaded.logits(x_test).astype(np.float64)
    raw = softmax(test_logits)
    calibrated = softmax(test_logits / temperature)
    card = loaded.card
    card.calibration = Calibration(
        method="temperature scaling fitted on the validation split (NLL)",
        temperature=round(temperature, 4),
        test_ece_before=round(expected_calibration_error(raw, y_test), 4),
        test_ece_after=round(expected_calibration_error(calibrated, y_test), 4),
    )
    report = classification_report(y_test, calibrated)
    card.test_metrics = TestMetrics(**report)
    # Its known failures are counted from these test figures.
    card.intended_use = for_card(card, out)
    card.save(model_files(out, name).card)
    title = card.architecture
    plots.confusion(
        np.array(report["confusion_matrix"]), f"{title}: test split", out / f"{name}.confusion.png"
    )
    plots.roc(y_test, calibrated, f"{title}: one-vs-rest ROC (test)", out / f"{name}.roc.png")
    plots.reliability(
        raw, calibrated, y_test, f"{title}: reliability (test)", out / f"{name}.reliability.png"
    )
    log.info(
        "[%s] test accuracy %.4f, macro-F1 %.4f, T=%.3f",
        name,
        report["accuracy"],
        report["macro_f1"],
        temperature,
    )
    return card
