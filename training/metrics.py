"""Classification metrics computed with numpy (no extra dependency)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.core.classes import CLASS_IDS

# The normal quantile of a two-sided 95% interval.
Z_95 = 1.959964


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (0, 1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = len(CLASS_IDS)) -> np.ndarray:
    """Rows are true classes, columns predicted, both in CLASS_IDS order."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def roc_curve(y_true_bin: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One-vs-rest ROC: false positive rates, true positive rates and the AUC."""
    order = np.argsort(-scores, kind="stable")
    y = y_true_bin[order].astype(np.float64)
    s = scores[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (1 + distinct) - tps
    pos, neg = max(y.sum(), 1.0), max(len(y) - y.sum(), 1.0)
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-class confidence over equal-width bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def classification_report(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/AUC and the confusion matrix."""
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred)
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for i, class_id in enumerate(CLASS_IDS):
        tp = cm[i, i]
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        entry = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(cm[i].sum()),
        }
        if 0 < (y_true == i).sum() < len(y_true):
            entry["auc"] = roc_curve(y_true == i, probs[:, i])[2]
        per_class[class_id] = entry
    present = [f for i, f in enumerate(f1s) if cm[i].sum()]
    return {
        "n_images": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(present)) if present else 0.0,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "ece": expected_calibration_error(probs, y_true) if len(y_true) else 0.0,
    }
