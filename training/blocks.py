"""Held-out patients first: figures from k-fold cross-validation over blocks of files.

No patient ids are published; a patient's photographs are believed to be numbered
together, so neighbouring file numbers of one class stand in for one patient
(``neighbour_similarity`` checks that). Fold i holds out block i of every class
(``file_numbers.contiguous_folds``), fold i+1 is its validation part, the rest
trains. Every field is held out exactly once; the figures pool the held-out fields,
with 95% intervals from a bootstrap over blocks of ``BLOCK_FILES`` neighbouring
files, resampled within each class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.classes import CLASS_IDS, MALIGNANT
from training.data import Sample
from training.file_numbers import contiguous_folds, file_number, number_in
from training.metrics import confusion_matrix

# Resampling unit of the bootstrap: about half a patient's photographs (89 patients, 3,256).
BLOCK_FILES = 20
BOOTSTRAP = 2000
# How near a block's edge a field lies for the edge check: about half a patient's files.
EDGE_FILES = 20
_MALIGNANT = np.array([MALIGNANT[c] for c in CLASS_IDS])


@dataclass(frozen=True)
class FoldPlan:
    """Indices (into the samples) of one fold's training, validation and held-out fields."""

    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def trainable_blocks(k: int, validation: bool = True) -> int:
    """How many blocks a fold can train on: all but the held-out one and its validation one."""
    return k - 2 if validation else k - 1


def fold_plans(
    samples: Sequence[Sample], k: int, validation: bool = True, training_blocks: int | None = None
) -> list[FoldPlan]:
    """The k folds of contiguous blocks, as indices into ``samples``; without ``validation``
    the validation block trains too and ``val`` is empty. ``training_blocks`` trains on
    fewer blocks (a learning curve): those following the validation block are kept, so the
    block beside the held-out one goes first and the validation block keeps its neighbour."""
    position = {id(s): i for i, s in enumerate(samples)}
    folds = [np.array(sorted(position[id(s)] for s in f)) for f in contiguous_folds(samples, k)]
    available = trainable_blocks(k, validation)
    wanted = available if training_blocks is None else training_blocks
    if not 1 <= wanted <= available:
        raise ValueError(f"training_blocks must be 1 to {available} with {k} folds, not {wanted}")
    plans = []
    for i in range(k):
        val = (i + 1) % k
        # In order from the validation block round to the held-out one.
        order = [(val + step) % k for step in range(0 if not validation else 1, k - 1)]
        train = np.concatenate([folds[j] for j in order[:wanted]])
        held = folds[val] if validation else np.array([], dtype=int)
        plans.append(FoldPlan(i, np.sort(train), held, folds[i]))
    return plans


def block_ids(samples: Sequence[Sample], size: int = BLOCK_FILES) -> np.ndarray:
    """Per sample, its bootstrap block: runs of ``size`` files of a class in number order."""
    return _blocks([s.class_id for s in samples], [file_number(s) for s in samples], size)


def _blocks(class_ids: Sequence[str], numbers: Sequence[int], size: int) -> np.ndarray:
    """Per item, ``"<class>:<k>"``: the k-th run of ``size`` items of its class by number."""
    ids = np.empty(len(class_ids), dtype=object)
    for class_id in CLASS_IDS:
        members = sorted(
            (i for i, c in enumerate(class_ids) if c == class_id), key=lambda i: numbers[i]
        )
        for rank, i in enumerate(members):
            ids[i] = f"{class_id}:{rank // size}"
    return ids


def figures(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1, Benign recall and malignant recall (any malignant class)."""
    cm = confusion_matrix(y_true, y_pred).astype(float)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    malignant_true = _MALIGNANT[y_true]
    benign = ~malignant_true
    return {
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1[cm.sum(1) > 0].mean()),
        "benign_recall": float((~_MALIGNANT[y_pred[benign]]).mean()) if benign.any() else 0.0,
        "malignant_recall": (
            float(_MALIGNANT[y_pred[malignant_true]].mean()) if malignant_true.any() else 0.0
        ),
    }


def block_bootstrap(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    blocks: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], dict[str, float]] = figures,
    n: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each figure, resampling whole blocks within each class."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[np.ndarray]] = {}
    for block in dict.fromkeys(blocks):
        by_class.setdefault(str(block).split(":")[0], []).append(np.flatnonzero(blocks == block))
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        chosen = [
            members[j]
            for members in by_class.values()
            for j in rng.integers(0, len(members), len(members))
        ]
        index = np.concatenate(chosen)
        for key, value in statistic(y_true[index], y_pred[index]).items():
            draws.setdefault(key, []).append(value)
    return {
        key: (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
        for key, values in draws.items()
    }


def summarise(
    records: Sequence[dict[str, Any]], samples: Sequence[Sample], role: str = "test"
) -> dict[str, Any]:
    """The figures of a cross-validation's held-out (or validation) records, with
    block-bootstrap intervals.

    A field the model could not answer (no cells) counts as wrong: it is in no class.
    """
    index = {relative_file(s): i for i, s in enumerate(samples)}
    held = [r for r in records if r["role"] == role]
    y_true, y_scored, answered = _scored(held)
    blocks = block_ids(samples)[[index[r["file"]] for r in held]]
    point = figures(y_true, y_scored)
    interval = block_bootstrap(y_true, y_scored, blocks)
    return {
        "n_fields": len(held),
        "answered": float(answered.mean()) if len(held) else 0.0,
        **{k: round(v, 4) for k, v in point.items()},
        "ci95": {k: [round(lo, 4), round(hi, 4)] for k, (lo, hi) in interval.items()},
        "block_files": BLOCK_FILES,
        "bootstrap": BOOTSTRAP,
    }


def _scored(held: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records' true classes, their answers as scored, and which were answered."""
    y_true = np.array([CLASS_IDS.index(r["class_id"]) for r in held], dtype=int)
    y_pred = np.array(
        [-1 if r["probabilities"] is None else int(np.argmax(r["probabilities"])) for r in held],
        dtype=int,
    )
    answered = y_pred >= 0
    # An unanswered field is scored as the class it is not, so it is always an error.
    return y_true, np.where(answered, y_pred, np.where(_MALIGNANT[y_true], 0, 1)), answered


def paired_gain(
    before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], role: str = "val"
) -> dict[str, float]:
    """How much more of the same fields ``after`` reads right than ``before`` (records of two
    cross-validations over the same blocks), with a 95% interval from a paired bootstrap over
    blocks of ``BLOCK_FILES`` neighbouring files within each class."""
    first = {r["file"]: r for r in before if r["role"] == role}
    held = [r for r in after if r["role"] == role and r["file"] in first]
    y_true, called_after, _ = _scored(held)
    _, called_before, _ = _scored([first[r["file"]] for r in held])
    both = np.stack([called_before, called_after], axis=1)
    blocks = _record_blocks(held)

    def gain(truth: np.ndarray, pairs: np.ndarray) -> dict[str, float]:
        return {"gain": float(np.mean(pairs[:, 1] == truth) - np.mean(pairs[:, 0] == truth))}

    lo, hi = block_bootstrap(y_true, both, blocks, statistic=gain)["gain"]
    return {"gain": gain(y_true, both)["gain"], "low": lo, "high": hi, "fields": len(held)}


def _record_blocks(held: Sequence[dict[str, Any]]) -> np.ndarray:
    """``block_ids`` of records that hold every field of their classes once (one role)."""
    return _blocks([r["class_id"] for r in held], [number_in(r["file"]) for r in held], BLOCK_FILES)


def relative_file(sample: Sample) -> str:
    """The sample's path below the data set's image root (``Benign/WBC-Benign-001.jpg``)."""
    return str(sample.path.relative_to(sample.path.parents[1]))


def neighbour_similarity(
    samples: Sequence[Sample], features: np.ndarray, seed: int = 0, draws: int = 2000
) -> dict[str, dict[str, float]]:
    """Per class: the mean feature distance between files with neighbouring numbers, and
    between random pairs of the class; a ratio well below 1 supports the block assumption.
    ``p`` is the share of random orderings whose neighbours are as close (a permutation test)."""
    rng = np.random.default_rng(seed)
    out = {}
    scale = features.std(axis=0) + 1e-9
    z = features / scale
    for class_id in CLASS_IDS:
        members = sorted(
            (i for i, s in enumerate(samples) if s.class_id == class_id),
            key=lambda i: file_number(samples[i]),
        )
        f = z[members]
        neighbour = float(np.linalg.norm(f[1:] - f[:-1], axis=1).mean())
        shuffled = []
        for _ in range(draws):
            g = f[rng.permutation(len(f))]
            shuffled.append(float(np.linalg.norm(g[1:] - g[:-1], axis=1).mean()))
        random_mean = float(np.mean(shuffled))
        out[class_id] = {
            "n": len(members),
            "neighbour_distance": round(neighbour, 4),
            "random_distance": round(random_mean, 4),
            "ratio": round(neighbour / random_mean, 4),
            "p": float((np.array(shuffled) <= neighbour).mean()),
        }
    return out


def edge_accuracy(
    records: Sequence[dict[str, Any]], k: int, validation_trained: bool = False
) -> dict[str, dict[str, float]]:
    """Held-out accuracy of the fields within ``EDGE_FILES`` files of an edge of their block
    where the next block trained the fold's model, of those near an edge where none did (the
    validation block, or the first or last file of the class), and of the rest. A patient
    whose photographs straddle an edge would lift the first group above the others.

    Fold i validates on block i + 1 (``fold_plans``), so only its block i - 1 trains beside
    it, unless the validation blocks trained too."""
    groups: dict[str, list[bool]] = {"beside training": [], "beside none": [], "inside": []}
    held = [r for r in records if r["role"] == "test"]
    for fold in range(k):
        low_trains = fold > 0 and (validation_trained or fold - 1 != (fold + 1) % k)
        high_trains = fold < k - 1 and validation_trained
        for class_id in CLASS_IDS:
            members = sorted(
                (r for r in held if r["fold"] == fold and r["class_id"] == class_id),
                key=lambda r: number_in(Path(r["file"]).stem),
            )
            for rank, r in enumerate(members):
                right = r["probabilities"] is not None and (
                    CLASS_IDS[int(np.argmax(r["probabilities"]))] == class_id
                )
                if rank < EDGE_FILES:
                    group = "beside training" if low_trains else "beside none"
                elif rank >= len(members) - EDGE_FILES:
                    group = "beside training" if high_trains else "beside none"
                else:
                    group = "inside"
                groups[group].append(right)
    return {
        name: {"fields": len(rights), "accuracy": float(np.mean(rights)) if rights else 0.0}
        for name, rights in groups.items()
    }
