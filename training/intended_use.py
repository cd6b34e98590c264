"""The model card's ``intended_use`` section, from one source.

``training.train`` writes it on every new card; ``python -m training.intended_use`` fills
it into the cards of a models folder. The known failures are counted from each card's
test confusion matrix: every confusion that changes the screening answer (a benign image
called malignant or a malignant one called benign), Benign called Early Pre-B first; then
those of held-out patients (the run that stands for the model, ``training.block_results``):
every confusion of at least ``BLOCK_FAILURE_SHARE`` of a class's held-out fields.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.model_card import (
    DataProvenance,
    IntendedUse,
    KnownFailure,
    ModelCard,
    TestMetrics,
)
from app.core.model_files import model_files, model_names
from training.block_results import standing

PURPOSE = (
    "Research decision support for screening photographs of whole fields of stained "
    "peripheral blood smears (100x oil objective) for B-lineage acute lymphoblastic "
    "leukaemia: benign hematogones, or the pattern of Early Pre-B, Pre-B or Pro-B blasts. "
    "For a haematologist who reviews every result; not a diagnosis. Confirm with "
    "morphology review and flow cytometry."
)

OUT_OF_SCOPE = [
    "Smears stained with another stain or protocol than the training laboratory's: the "
    "stain's colour differs between the classes of the training data, and the model "
    "partly reads it.",
    "Bone marrow aspirates, or any specimen other than a peripheral blood smear.",
    "Photographs from other laboratories, microscopes or cameras: every training "
    "photograph comes from one laboratory and one camera, and accuracy elsewhere has not "
    "been measured.",
    "Other leukaemias and other diseases (AML, T-ALL, CLL, reactive lymphocytes): the "
    "model knows only hematogones and three B-ALL subtypes, and names one of them for "
    "anything it is shown.",
    "A diagnosis or a subtype on its own: the subtype is a morphological pattern, and "
    "diagnosis and subtype need flow cytometry.",
]

DATA = DataProvenance(
    source="The bone marrow laboratory of Taleqani Hospital, Tehran, Iran: peripheral "
    "blood smears photographed with a Zeiss camera under a 100x objective, 224x224 JPEG.",
    data_set="M. Aria, M. Ghaderzadeh, D. Bashash, H. Abolghasemi, F. Asadi, A. Hosseini, "
    '"Acute Lymphoblastic Leukemia (ALL) image dataset", Kaggle, 2021.',
    doi="10.34740/KAGGLE/DSV/2175623",
    patients=89,
    labels="Each photograph's class confirmed by flow cytometry: 25 patients with "
    "hematogones (benign), 64 with B-ALL (Early Pre-B, Pre-B or Pro-B).",
    held_back="About 10% of each class of the full release (3256 photographs) is held "
    "back by its publishers for independent evaluation: these models never saw it, and "
    "it has not been scored.",
    split="70/15/15 by image (train, validation, test), stratified by class, identical "
    "and near-identical photographs kept together (split.csv). No patient ids are "
    "published, so one patient's photographs can fall on both sides, and the test "
    "figures overestimate accuracy on new patients (REPORT.md's patient-proxy estimate).",
)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
BENIGN, EARLY = "benign", "early_pre_b"
LOOK_ALIKE = "hematogones and Early Pre-B blasts look alike"
# A held-out patients' confusion worth a line on the card: this share of a class's fields.
BLOCK_FAILURE_SHARE = 0.05
BLOCKS_SPLIT = "patient_blocks"


def _failure(true_class: str, called: str, count: int, of: int) -> KnownFailure:
    share = f" ({100 * count / of:.1f}%)" if of else ""
    summary = f"{count} of {of}{share} {DISPLAY_NAMES[true_class]} test images called "
    summary += DISPLAY_NAMES[called] + _meaning(true_class, called)
    return KnownFailure(true_class, called, count, of, "test", summary + ".")


def _meaning(true_class: str, called: str) -> str:
    """What a confusion means for the patient, as the end of its sentence."""
    if (true_class, called) == (BENIGN, EARLY):
        return f"; {LOOK_ALIKE}"
    if called == BENIGN:
        return ": a missed malignancy"
    if true_class == BENIGN:
        return ": hematogones called malignant"
    return ": the subtype is a pattern that varies from patient to patient"


def known_failures(metrics: TestMetrics | None) -> list[KnownFailure]:
    """Every confusion into or out of Benign on the test split, Benign called Early Pre-B
    first (listed even when it did not occur), then the others by count."""
    if metrics is None or len(metrics.confusion_matrix) != len(CLASS_IDS):
        return [
            KnownFailure(
                BENIGN,
                EARLY,
                summary=f"Benign called Early Pre-B: {LOOK_ALIKE}. Not counted for this model.",
            )
        ]
    matrix = metrics.confusion_matrix
    b = CLASS_IDS.index(BENIGN)
    cells = [(b, j) for j in range(len(CLASS_IDS)) if j != b]
    cells += [(i, b) for i in range(len(CLASS_IDS)) if i != b]
    first = (b, CLASS_IDS.index(EARLY))
    others = sorted(
        (c for c in cells if c != first and matrix[c[0]][c[1]]), key=lambda c: -matrix[c[0]][c[1]]
    )
    return [
        _failure(CLASS_IDS[i], CLASS_IDS[j], matrix[i][j], sum(matrix[i]))
        for i, j in [first, *others]
    ]


def block_failures(records: Sequence[dict[str, Any]]) -> list[KnownFailure]:
    """The confusions of a cross-validation's held-out fields (``training.cell_cv`` records)
    of at least ``BLOCK_FAILURE_SHARE`` of their class, by count; an unanswered field is in
    no class and counts in none."""
    held = [r for r in records if r["role"] == "test"]
    fields = Counter(str(r["class_id"]) for r in held)
    answered = [r for r in held if r["probabilities"] is not None]
    confused = Counter(
        (str(r["class_id"]), CLASS_IDS[int(np.argmax(r["probabilities"]))]) for r in answered
    )
    found = [
        (true_class, called, count)
        for (true_class, called), count in confused.items()
        if true_class != called and count >= BLOCK_FAILURE_SHARE * fields[true_class]
    ]
    return [
        _block_failure(true_class, called, count, fields[true_class])
        for true_class, called, count in sorted(found, key=lambda f: -f[2])
    ]


def _block_failure(true_class: str, called: str, count: int, of: int) -> KnownFailure:
    summary = (
        f"On patients held out of training (blocks of neighbouring files), {count} of {of} "
        f"({100 * count / of:.1f}%) {DISPLAY_NAMES[true_class]} fields called "
        f"{DISPLAY_NAMES[called]}{_meaning(true_class, called)}"
    )
    return KnownFailure(true_class, called, count, of, BLOCKS_SPLIT, summary + ".")


def intended_use(
    metrics: TestMetrics | None,
    images: int,
    block_records: Sequence[dict[str, Any]] = (),
) -> IntendedUse:
    """The section for a model scored as ``metrics`` (and over patient blocks, when it has
    ``block_records``), trained on a split of ``images``."""
    return IntendedUse(
        purpose=PURPOSE,
        out_of_scope=list(OUT_OF_SCOPE),
        known_failures=[*known_failures(metrics), *block_failures(block_records)],
        data=replace(DATA, images=images),
    )


def for_card(card: ModelCard, models_dir: Path) -> IntendedUse:
    """The section for ``card``: its test figures, its held-out patients' figures where
    ``models_dir`` has them, and the images of its split manifest."""
    with (models_dir / card.split_manifest.file).open(newline="") as f:
        images = sum(1 for _ in csv.DictReader(f))
    run = standing(models_dir, card.name)
    return intended_use(card.test_metrics, images, run["records"] if run else [])


def fill(models_dir: Path) -> list[str]:
    """Writes the section into every card of ``models_dir``; the names of those updated."""
    names = model_names(models_dir)
    for name in names:
        path = model_files(models_dir, name).card
        ModelCard.update(path, intended_use=for_card(ModelCard.load(path), models_dir))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the intended-use section into model cards")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    for name in fill(parser.parse_args().models_dir):
        print(f"[{name}] intended use written", flush=True)


if __name__ == "__main__":
    main()
