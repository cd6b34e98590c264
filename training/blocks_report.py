"""The report's lead section: every model on held-out patient blocks, side by side.

Reads ``models/blocks/<model>.json`` (``cell-blocks`` and ``field-blocks``) and
``models/blocks/neighbours.json`` (the check that neighbouring files belong together),
writes the section at the top of ``models/REPORT.md`` and the figures into each
served model's card (``patient_blocks``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.core.cells.detect import leukocyte_mask, normalise_scale
from app.core.cells.stain import optical_density, white_point
from app.core.classes import CLASS_IDS, MALIGNANT, leans_malignant
from app.core.model_card import ModelCard, PatientBlocks
from app.core.model_files import model_files, model_names
from app.core.preprocessing import load_image
from app.core.scale import measure_cells
from training.architectures import ARCHITECTURES
from training.block_results import (
    RUN_NOISE,
    fewer_blocks,
    gain_over,
    one_block_fewer,
    refit,
    refit_run,
    results,
    runs,
    standing,
)
from training.blocks import EDGE_FILES, edge_accuracy, neighbour_similarity, paired_gain
from training.data import Sample
from training.intended_use import for_card
from training.markdown import table
from training.paths import BLOCKS_RESULTS
from training.progress import track
from training.report import BLOCKS_HEADING, replace_first_section

NEIGHBOURS = "neighbours.json"
# The targets for the best cell model on held-out blocks.
TARGETS = {"accuracy": 0.95, "benign_recall": 0.95, "malignant_recall": 0.99}
IMAGE_LEVEL_TARGET = 0.99
FIGURES = ("accuracy", "macro_f1", "benign_recall", "malignant_recall")


def field_features(sample: Sample) -> np.ndarray:
    """What a slide and a patient share: background colour, leukocyte stain, cell size, count."""
    image = load_image(sample.path)
    measured = measure_cells(image)
    rbc = measured.size_px or 24.0
    rgb = np.asarray(normalise_scale(image, rbc), np.float32) / 255
    mask = leukocyte_mask(rgb)
    white = white_point(rgb, mask)
    stain = optical_density(rgb, white)[mask].mean(axis=0) if mask.any() else np.zeros(3)
    return np.array([*white, *stain, rbc, float(mask.mean())], np.float64)


def write_neighbours(samples: Sequence[Sample], models_dir: Path) -> dict[str, Any]:
    """Measure whether neighbouring file numbers look alike, per class, and save it."""
    features = np.stack([field_features(s) for s in track(samples, "measuring every field")])
    result = {
        "features": "background white point (RGB), leukocytes' mean optical density (RGB), "
        "red-cell size, leukocyte area share",
        "classes": neighbour_similarity(samples, features),
    }
    path = models_dir / BLOCKS_RESULTS / NEIGHBOURS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _cell(figures: dict[str, Any], key: str) -> str:
    lo, hi = figures["ci95"][key]
    return f"{100 * figures[key]:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def blocks_markdown(models_dir: Path) -> str:
    data = results(models_dir)
    lines = [
        BLOCKS_HEADING,
        "",
        "The figures to judge the models by. No patient ids are published; neighbouring file "
        "numbers of a class stand in for a patient. Each of 5 folds holds out one block of "
        "neighbouring files of every class, validates on the next block and trains on the "
        "rest; every field is held out once and the held-out fields are pooled. Intervals: "
        "95% bootstrap over blocks of 20 neighbouring files, resampled within each class. "
        "Choices (the architecture, the default model) are made on the *validation* blocks.",
        "",
    ]
    if not data:
        return "\n".join([*lines, "Not measured yet: run `python -m training cell-blocks`.", ""])
    rows = []
    for name, d in data.items():
        held, val = d["held_out"], d["validation"]
        rows.append(
            [
                ARCHITECTURES[name].display_name,
                d["unit"],
                d.get("views", 1),
                *(_cell(held, k) for k in FIGURES),
                f"{100 * held['answered']:.1f}%",
                f"{100 * val['accuracy']:.1f}%",
            ]
        )
        refitted = refit(models_dir, name)
        if refitted is not None:
            held = refitted["held_out"]
            # The recipe chosen on validation may train longer than the protocol's run.
            epochs = refitted.get("config", {}).get("epochs")
            longer = f", {epochs} epochs" if epochs != d.get("config", {}).get("epochs") else ""
            rows.append(
                [
                    f"{ARCHITECTURES[name].display_name}, refit on 4 blocks{longer}",
                    d["unit"],
                    refitted.get("views", 1),
                    *(_cell(held, k) for k in FIGURES),
                    f"{100 * held['answered']:.1f}%",
                    "(trained on)",
                ]
            )
    lines += [
        table(
            [
                "model",
                "reads",
                "views",
                "accuracy",
                "macro-F1",
                "Benign recall",
                "malignant recall",
                "fields answered",
                "validation-block accuracy",
            ],
            rows,
        ),
        "",
        "*Malignant recall* counts a malignant field called any malignant subtype. A field a "
        "cell model could not answer (no whole leukocyte) counts as wrong. *Views*: each "
        "image scored as it is (1) or as the mean of its eight flips and quarter turns (8), "
        "as its card serves it where the run was scored so (`cell-blocks --views 8`). "
        "Whole-field models: "
        "the architecture's recipe, one view (`python -m training field-blocks`); cell models: "
        f"`python -m training cell-blocks`. Epochs: {_epochs(data)}. A row *refit on 4 blocks* "
        "is nested cross-validation's last step: each fold's model trained again on all its "
        "four blocks with the recipe chosen on validation, shown only where the learning curve "
        "below found on the validation blocks that more patients pay.",
        "",
        *_targets(models_dir, data),
        *_validation_trained(models_dir),
        *_learning_curve(models_dir, results(models_dir, served=False)),
        *_edges(data),
        *_hidden_blasts(data),
        *_image_level(models_dir),
        *_neighbours(models_dir),
    ]
    return "\n".join(lines)


def _mark(met: bool) -> str:
    return "✓" if met else "✗"


def _image_level(models_dir: Path) -> list[str]:
    """Every served model's image-level test figures, from its card."""
    rows = []
    for name in model_names(models_dir):
        card = ModelCard.load(model_files(models_dir, name).card)
        metrics, calibration = card.test_metrics, card.calibration
        if metrics is None:
            continue
        benign = metrics.per_class.get("benign", {}).get("recall")
        confident = calibration.test_accuracy_when_confident
        rows.append(
            [
                card.display_name,
                card.unit,
                f"{100 * metrics.accuracy:.1f}%"
                + (
                    f" {_mark(metrics.accuracy >= IMAGE_LEVEL_TARGET)}"
                    if card.unit == "cell"
                    else ""
                ),
                f"{metrics.macro_f1:.3f}",
                "n/a" if benign is None else f"{100 * benign:.1f}%",
                f"{100 * (calibration.uncertain_test_rate or 0):.1f}%",
                "n/a" if confident is None else f"{100 * confident:.1f}%",
            ]
        )
    if not rows:
        return []
    return [
        "**The same models on the image-level test split** (each card's `test_metrics` and "
        "`calibration`, written by `python -m training train` or `train-cells`): images split "
        "at random, so neighbours of a test image trained the model and these figures are "
        f"optimistic. Target for the cell models: {100 * IMAGE_LEVEL_TARGET:.0f}%.",
        "",
        table(
            [
                "model",
                "reads",
                "test accuracy",
                "macro-F1",
                "Benign recall",
                "uncertain",
                "accuracy when confident",
            ],
            rows,
        ),
        "",
    ]


def _epochs(data: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{ARCHITECTURES[n].display_name} {d.get('config', {}).get('epochs', '?')}"
        for n, d in data.items()
    )


def _targets(models_dir: Path, data: dict[str, dict[str, Any]]) -> list[str]:
    cells = {n: d for n, d in data.items() if d["unit"] == "cell"}
    if not cells:
        return []
    best = max(cells, key=lambda n: cells[n]["validation"]["accuracy"])
    refitted = refit(models_dir, best)
    held = (refitted or cells[best])["held_out"]
    marks = ", ".join(
        f"{k.replace('_', ' ')} {100 * held[k]:.1f}% (target {100 * t:.0f}%) "
        f"{'✓' if held[k] >= t else '✗'}"
        for k, t in TARGETS.items()
    )
    how = "Held out, refit on its 4 blocks" if refitted else "Held out"
    return [
        f"Best cell model on the validation blocks: {ARCHITECTURES[best].display_name}. "
        f"{how}: {marks}.",
        "",
    ]


def _validation_trained(models_dir: Path) -> list[str]:
    """The runs whose folds trained on their validation block too (``cell-blocks
    --train-on-validation``), and whether a learning curve on validation lets them stand."""
    data = results(models_dir)
    kept = [ARCHITECTURES[n].display_name for n in data if refit(models_dir, n) is not None]
    rows = []
    for d in runs(models_dir, "*.trainval.json"):
        edges = edge_accuracy(d["records"], int(d["k"]), validation_trained=True)
        rows.append(
            [
                ARCHITECTURES[d["model"]].display_name,
                d["views"],
                d["config"]["epochs"],
                *(_cell(d["held_out"], k) for k in FIGURES),
                *(_edge(edges[g]) for g in ("beside training", "inside")),
            ]
        )
    if not rows:
        return []
    return [
        "**With four training blocks a fold.** The same folds, but each also trains on its "
        "validation block, for every epoch of its schedule (no early stopping), as plain "
        "5-fold cross-validation does (`python -m training cell-blocks --train-on-validation`). "
        + (
            f"For {' and '.join(kept)} the learning curve below shows on the validation "
            "blocks that more patients pay, so its run is nested cross-validation's last step "
            "and stands in the table above; any other run here shows what a fifth more "
            "patients is worth, and no choice rests on it."
            if kept
            else "Nothing validates these runs, so no choice rests on them and the table above "
            "stays the measure; they show what a fifth more patients in training is worth."
        )
        + " Held out, with the edge check below (every block beside a held-out one now trains):",
        "",
        table(
            [
                "model",
                "views",
                "epochs",
                "accuracy",
                "macro-F1",
                "Benign recall",
                "malignant recall",
                "beside a training block",
                "inside the block",
            ],
            rows,
        ),
        "",
    ]


def _refit_pending(models_dir: Path, name: str, epochs: int, gain: float) -> str:
    """What the report says when the learning curve calls for a refit that is not saved."""
    if gain <= RUN_NOISE or refit_run(models_dir, name) is not None:
        return ""
    return (
        f" Its refit on all four blocks has not been run yet (`python -m training cell-blocks "
        f"--model {name} --epochs {epochs} --train-on-validation`): its protocol run stands "
        "until it is."
    )


def _learning_curve(models_dir: Path, data: dict[str, dict[str, Any]]) -> list[str]:
    """The validation blocks read by models trained on fewer blocks, beside the protocol's;
    ``data``: the one-view protocol runs, as the fewer blocks' runs are scored."""
    rows, verdicts = [], []
    for name, full in data.items():
        fewer = fewer_blocks(models_dir, name)
        if not fewer:
            continue
        for d in [*fewer, full]:
            val = d["validation"]
            rows.append(
                [
                    ARCHITECTURES[name].display_name,
                    d.get("training_blocks", int(d["k"]) - 2),
                    *(_cell(val, k) for k in ("accuracy", "benign_recall", "malignant_recall")),
                    _cell(d["held_out"], "accuracy"),
                ]
            )
        smaller = one_block_fewer(models_dir, name, full)
        if smaller is not None:
            gain = gain_over(full, smaller)
            # The same validation fields in both runs: the interval of the difference.
            paired = paired_gain(smaller["records"], full["records"], "val")
            verdicts.append(
                f"{ARCHITECTURES[name].display_name} gains {100 * gain:.1f} points on "
                f"validation from its last training block (paired block-bootstrap 95% interval "
                f"{100 * paired['low']:.1f} to {100 * paired['high']:.1f}), "
                + (
                    f"more than the {100 * RUN_NOISE:.1f} points one run differs from the "
                    "next: more patients are shown to pay, on the validation blocks alone."
                    if gain > RUN_NOISE
                    else f"not more than the {100 * RUN_NOISE:.1f} points one run differs "
                    "from the next."
                )
                + _refit_pending(models_dir, name, full["config"]["epochs"], gain)
            )
    if not rows:
        return []
    return [
        "**A learning curve on the validation blocks.** The same folds, each trained on fewer "
        "blocks (the one beside its held-out block left out first), early-stopped on and "
        "scoring the same validation block (`python -m training cell-blocks "
        "--training-blocks N`). Whether a fold gains from more patients is read here, on "
        "validation:",
        "",
        table(
            [
                "model",
                "training blocks",
                "validation accuracy",
                "validation Benign recall",
                "validation malignant recall",
                "held-out accuracy",
            ],
            rows,
        ),
        "",
        " ".join(verdicts),
        "",
    ]


def _edges(data: dict[str, dict[str, Any]]) -> list[str]:
    """Each model's edge check (``training.blocks.edge_accuracy``) from its saved records."""
    rows = []
    for name, d in data.items():
        if not d.get("records"):
            continue
        edges = edge_accuracy(d["records"], int(d["k"]), d.get("validation_trained", False))
        rows.append(
            [ARCHITECTURES[name].display_name]
            + [_edge(edges[g]) for g in ("beside training", "beside none", "inside")]
        )
    if not rows:
        return []
    return [
        "**Does a patient straddle a block's edge?** Each held-out block lies beside the "
        "block before it, which trained the fold's model, and the block after it, which only "
        "validated it. If one patient's photographs crossed an edge, the held-out fields "
        f"within {EDGE_FILES} files of a training block would be read better than those "
        "beside no training block. Held-out accuracy (fields):",
        "",
        table(["model", "beside a training block", "beside none", "inside the block"], rows),
        "",
    ]


def _hidden_blasts(data: dict[str, dict[str, Any]]) -> list[str]:
    """Held-out fields whose most likely class is benign although their malignant classes
    together hold at least as much: the case rule's lean reads them as malignant evidence."""
    rows = []
    for name, d in data.items():
        held = [r for r in d.get("records", []) if r["role"] == "test" and r.get("probabilities")]
        if not held:
            continue
        hidden = [r for r in held if _benign_led_blasts(r["probabilities"])]
        malignant = sum(1 for r in hidden if MALIGNANT[r["class_id"]])
        rows.append(
            [ARCHITECTURES[name].display_name, f"{len(hidden)} of {len(held)}", str(malignant)]
        )
    if not rows:
        return []
    return [
        "**Blasts a four-way vote would hide.** Held-out fields of the runs above whose most "
        "likely class is benign while the three malignant classes together hold at least as "
        "much (say 40% benign and 20% for each subtype): the case rule reads such a field as "
        "leaning malignant "
        "(`app.core.classes.leans_malignant`), where its top class alone would read benign.",
        "",
        table(["model", "benign-led fields leaning malignant", "of them malignant fields"], rows),
        "",
    ]


def _benign_led_blasts(probabilities: Sequence[float]) -> bool:
    named = dict(zip(CLASS_IDS, probabilities, strict=True))
    return not MALIGNANT[max(CLASS_IDS, key=named.__getitem__)] and leans_malignant(named)


def _edge(group: dict[str, float]) -> str:
    return f"{100 * group['accuracy']:.1f}% ({group['fields']})"


def _neighbours(models_dir: Path) -> list[str]:
    path = models_dir / BLOCKS_RESULTS / NEIGHBOURS
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    rows = [
        [
            c,
            r["n"],
            f"{r['neighbour_distance']:.2f}",
            f"{r['random_distance']:.2f}",
            f"{r['ratio']:.2f}",
            f"{r['p']:.4f}",
        ]
        for c, r in data["classes"].items()
    ]
    return [
        "**Do neighbouring files belong together?** For each class, the mean distance "
        f"between the features of files with neighbouring numbers ({data['features']}; each "
        "standardised) against the same for the files in random order (2,000 shuffles; *p*: "
        "the share of shuffles whose neighbours were as close). A ratio well below 1 supports "
        "the blocks as a stand-in for patients "
        "(`python -m training blocks-report --data-dir DIR`).",
        "",
        table(["class", "files", "neighbours", "random order", "ratio", "p"], rows),
        "",
        *_unsupported(data["classes"]),
    ]


def _unsupported(classes: dict[str, dict[str, float]]) -> list[str]:
    weak = [c for c, r in classes.items() if r["p"] >= 0.05]
    if not weak:
        return []
    return [
        f"For {', '.join(weak)}, neighbouring files are no closer than files in random order on "
        "these features: the blocks may mix patients there, and the held-out figures of "
        "that class are nearer an image-level estimate (optimistic).",
        "",
    ]


def patient_blocks(d: dict[str, Any]) -> PatientBlocks:
    held = d["held_out"]
    refitted = d.get("validation_trained", False)
    command = f"python -m training {'cell' if d['unit'] == 'cell' else 'field'}-blocks"
    epochs = d.get("config", {}).get("epochs")
    command += f" --epochs {epochs}" if epochs else ""
    views = int(d.get("views", 1))
    command += f" --views {views}" if views > 1 else ""
    how = (
        "each fold's model refit on its four other blocks (nested cross-validation's last "
        f"step, which a learning curve on the validation blocks supports; {command} "
        "--train-on-validation)"
        if refitted
        else f"trained on three blocks, early-stopped on a fourth ({command})"
    )
    return PatientBlocks(
        folds=int(d["k"]),
        accuracy=held["accuracy"],
        benign_recall=held["benign_recall"],
        malignant_recall=held["malignant_recall"],
        macro_f1=held["macro_f1"],
        ci95=held["ci95"]["accuracy"],
        intervals=held["ci95"],
        n_fields=held["n_fields"],
        method=(
            f"{d['k']}-fold cross-validation over contiguous blocks of file numbers per class, "
            f"{how}; "
            + ("each image scored as the mean of its eight orientations; " if views > 1 else "")
            + f"95% intervals from a bootstrap over blocks of {held['block_files']} "
            "neighbouring files"
        ),
    )


def write_blocks_report(models_dir: Path) -> list[str]:
    """Write the section at the top of REPORT.md, and the figures and the known failures
    they show into the served cards; the names of the cards updated."""
    path = models_dir / "REPORT.md"
    text = path.read_text() if path.exists() else "# Model report\n"
    text = replace_first_section(text, BLOCKS_HEADING, blocks_markdown(models_dir))
    path.write_text(text.rstrip() + "\n")
    updated = []
    data = results(models_dir)
    for name in data:
        card = model_files(models_dir, name).card
        run = standing(models_dir, name, data)
        if card.exists() and run is not None:
            # The held-out patients' confusions are among the card's known failures.
            use = for_card(ModelCard.load(card), models_dir)
            ModelCard.update(card, patient_blocks=patient_blocks(run), intended_use=use)
            updated.append(name)
    return updated
