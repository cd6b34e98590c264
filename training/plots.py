"""PNG figures of training curves, confusion matrices and ROC curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from training.metrics import roc_curve


def training_curves(history: dict[str, list[float]], title: str, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        ax.plot(epochs, history[key], label="train")
        ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{title}: {label.lower()}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def confusion(cm: np.ndarray, title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(cm, cmap="Blues")
    names = [DISPLAY_NAMES[c] for c in CLASS_IDS]
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def roc(y_true: np.ndarray, probs: np.ndarray, title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, class_id in enumerate(CLASS_IDS):
        if 0 < (y_true == i).sum() < len(y_true):
            fpr, tpr, auc = roc_curve(y_true == i, probs[:, i])
            ax.plot(fpr, tpr, label=f"{DISPLAY_NAMES[class_id]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def reliability(
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    y_true: np.ndarray,
    title: str,
    out: Path,
    n_bins: int = 10,
) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    edges = np.linspace(0, 1, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    for probs, label in ((probs_before, "before"), (probs_after, "after temperature scaling")):
        conf = probs.max(axis=1)
        correct = probs.argmax(axis=1) == y_true
        accs = [
            correct[(conf > lo) & (conf <= hi)].mean()
            if ((conf > lo) & (conf <= hi)).any()
            else np.nan
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
        ax.plot(centers, accs, "o-", label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
