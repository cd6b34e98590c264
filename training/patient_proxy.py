"""A patient-level estimate without patient ids: hold out contiguous blocks of file numbers.

The data set's photographs of one patient are believed to be numbered together, so a
block of neighbouring file numbers stands in for a few held-out patients. Each of the
``k`` folds holds out one block of every class and trains on the rest (the next block
is the validation part, for early stopping); the same protocol on randomly drawn folds
is the image-level control, so the two differ only in how the images were grouped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.data import Sample
from training.dataset import load_arrays
from training.file_numbers import contiguous_folds, random_folds
from training.markdown import table
from training.metrics import classification_report
from training.scale_fit import fit_scale
from training.train import TrainConfig, augmentation_for, fit_network

RESULT_NAME = "patient_proxy.json"


@dataclass(frozen=True)
class FoldResult:
    grouping: str
    fold: int
    n_test: int
    accuracy: float
    macro_f1: float


def run_folds(folds: list[list[Sample]], grouping: str, config: TrainConfig) -> list[FoldResult]:
    """Train on all folds but two, stop early on the next fold, score the held-out one."""
    k = len(folds)
    results = []
    for i in range(k):
        held_out, val = folds[i], folds[(i + 1) % k]
        train = [s for j, f in enumerate(folds) if j not in (i, (i + 1) % k) for s in f]
        scale = fit_scale(train)
        arrays = [load_arrays(part, _input_size(config), scale) for part in (train, val, held_out)]
        model, _, _ = fit_network(config, augmentation_for(config.model), arrays[0], arrays[1])
        x_test, y_test = arrays[2]
        report = classification_report(y_test, model.predict(x_test, verbose=0))
        results.append(FoldResult(grouping, i, len(y_test), report["accuracy"], report["macro_f1"]))
    return results


def _input_size(config: TrainConfig) -> int:
    from training.architectures import architecture

    return architecture(config.model).input_size


def evaluate(
    samples: Sequence[Sample], config: TrainConfig, k: int = 5, out: Path | None = None
) -> list[FoldResult]:
    """Contiguous-block folds and random folds under one protocol; saved as JSON in ``out``."""
    results = run_folds(contiguous_folds(samples, k), "contiguous blocks", config)
    results += run_folds(random_folds(samples, k, config.seed), "random", config)
    if out is not None:
        payload = {"config": asdict(config), "k": k, "folds": [asdict(r) for r in results]}
        (out / RESULT_NAME).write_text(json.dumps(payload, indent=2) + "\n")
    return results


def patient_proxy_markdown(path: Path) -> str:
    """The report's section, from the saved result (``python -m training patient-proxy``)."""
    if not path.exists():
        return (
            "## Patient-proxy estimate\n\nNot measured yet: run "
            "`python -m training patient-proxy`.\n"
        )
    data = json.loads(path.read_text())
    folds = [FoldResult(**f) for f in data["folds"]]
    rows, means = [], {}
    for grouping in ("random", "contiguous blocks"):
        chosen = [f for f in folds if f.grouping == grouping]
        acc = np.array([f.accuracy for f in chosen])
        means[grouping] = float(acc.mean())
        rows.append(
            [
                grouping,
                len(chosen),
                ", ".join(f"{100 * a:.1f}%" for a in acc),
                f"{100 * acc.mean():.2f}% (± {100 * acc.std(ddof=1):.2f})",
                f"{np.mean([f.macro_f1 for f in chosen]):.3f}",
            ]
        )
    config = data["config"]
    seed = f" --seed {config['seed']}" if "seed" in config else ""
    # The flags that reproduce the saved run; the rest of its config is the defaults'.
    command = (
        f"python -m training patient-proxy --model {config['model']} "
        f"--epochs {config['epochs']} --folds {data['k']}{seed}"
    )
    gap = 100 * (means["random"] - means["contiguous blocks"])
    return "\n".join(
        [
            "## Patient-proxy estimate",
            "",
            f"{config['model']} trained {data['k']} times per grouping, {config['epochs']} "
            "epochs each, on three fifths of the data set; the next fold stops training "
            f"early and the held-out fold is scored (`{command}`). "
            "*Contiguous blocks* hold out neighbouring file numbers of every class, which "
            "stand in for held-out patients; *random* draws the folds at random, as the "
            "image-level split does.",
            "",
            table(["grouping", "folds", "accuracy per fold", "mean (± sd)", "macro-F1"], rows),
            "",
            f"Holding out blocks of neighbouring images costs {gap:.1f} points of accuracy "
            "against random folds trained and scored the same way. The image-level test "
            "figures above overestimate accuracy on new patients by about that much, if "
            "the file numbering follows the patients.",
            "",
        ]
    )
