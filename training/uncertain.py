"""The "uncertain" threshold of a committed model, fitted on the validation split.

Clean validation images alone are too easy for the best models (VGGNet was right on
all but two, so no threshold was found and it never said "uncertain"). The rule is
therefore fitted on the validation images together with their capture variants
(``training/perturbations.py``), where every model makes mistakes, so the threshold
reflects how each model's confidence behaves when it is wrong.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from app.core.model_card import Calibration
from app.core.model_files import model_files
from app.core.model_store import load_model
from training.data import Sample
from training.dataset import load_arrays
from training.evaluate import select_split
from training.perturbations import PERTURBATIONS
from training.split import MANIFEST_NAME

UNCERTAIN_TARGET_ACCURACY = 0.80
UNCERTAIN_WINDOW = 20


def choose_uncertain_below(
    confidence: np.ndarray,
    correct: np.ndarray,
    target: float = UNCERTAIN_TARGET_ACCURACY,
    window: int = UNCERTAIN_WINDOW,
) -> float:
    """The confidence below which predictions are right less than ``target`` of the time.

    Sorts the validation predictions by confidence and slides a window of ``window``
    neighbours over them: c lies just above the most confident window whose accuracy
    is under ``target`` (1.0 when that is the top window, 0.0 when no window is).
    Local, not cumulative: the many right answers at low confidence must not hide
    that answers at that confidence are often wrong, nor the reverse.
    """
    order = np.argsort(confidence, kind="stable")
    conf = np.asarray(confidence, dtype=np.float64)[order]
    hits = np.asarray(correct, dtype=np.float64)[order]
    window = min(window, len(conf))
    if window == 0:
        return 0.0
    local = np.convolve(hits, np.ones(window), mode="valid") / window
    under = np.flatnonzero(local < target)
    if not under.size:
        return 0.0
    end = int(under.max()) + window  # first prediction after the last such window
    if end >= len(conf):
        return 1.0
    return float((conf[end - 1] + conf[end]) / 2)


def fit_uncertain(models_dir: str | Path, name: str, samples: list[Sample]) -> Calibration:
    """Fit ``uncertain_below`` on validation and its capture variants; write it to the card."""
    root = Path(models_dir)
    loaded = load_model(root, name)
    card = loaded.card
    val = select_split(samples, root / MANIFEST_NAME, "val")
    test = select_split(samples, root / MANIFEST_NAME, "test")
    x_val, y_val = load_arrays(val, loaded.input_size, card.scale)
    variants = [x_val] + [np.stack([fn(image) for image in x_val]) for fn in PERTURBATIONS.values()]
    probs = np.concatenate([loaded.predict(x) for x in variants])
    labels = np.tile(y_val, len(variants))
    uncertain_below = choose_uncertain_below(probs.max(axis=1), probs.argmax(axis=1) == labels)

    val_probs = probs[: len(y_val)]
    x_test, y_test = load_arrays(test, loaded.input_size, card.scale)
    test_probs = loaded.predict(x_test)
    test_unc = test_probs.max(axis=1) < uncertain_below
    test_correct = test_probs.argmax(axis=1) == y_test
    card.calibration = replace(
        card.calibration,
        uncertain_below=round(uncertain_below, 4),
        uncertain_rule=(
            "a prediction is 'uncertain' when its calibrated top-class probability is below "
            "uncertain_below: just above the most confident run of "
            f"{UNCERTAIN_WINDOW} neighbouring predictions (sorted by confidence) that are "
            f"right less than {UNCERTAIN_TARGET_ACCURACY:.0%} of the time, among the "
            "validation images and their capture variants (" + ", ".join(PERTURBATIONS) + ")"
        ),
        uncertain_val_rate=round(float((val_probs.max(axis=1) < uncertain_below).mean()), 4),
        uncertain_test_rate=round(float(test_unc.mean()), 4),
        test_accuracy_when_confident=(
            round(float(test_correct[~test_unc].mean()), 4) if (~test_unc).any() else None
        ),
        test_accuracy_when_uncertain=(
            round(float(test_correct[test_unc].mean()), 4) if test_unc.any() else None
        ),
    )
    card.save(model_files(root, name).card)
    return card.calibration
