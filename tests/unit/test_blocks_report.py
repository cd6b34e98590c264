"""The report's lead section and the cards' patient_blocks, from saved cross-validations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.core.model_card import InferenceSpec, ModelCard
from training.blocks_report import blocks_markdown, write_blocks_report
from training.report import BLOCKS_HEADING

ROOT = Path(__file__).resolve().parents[2]


def figures(accuracy: float) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1", "benign_recall", "malignant_recall")
    return {
        "n_fields": 100,
        "answered": 0.99,
        **{k: accuracy for k in keys},
        "ci95": {k: [accuracy - 0.05, accuracy + 0.03] for k in keys},
        "block_files": 20,
        "bootstrap": 2000,
    }


def saved(
    folder: Path,
    name: str,
    unit: str,
    held: float,
    val: float,
    records: list[dict[str, Any]] | None = None,
    views: int = 1,
) -> None:
    (folder / "blocks").mkdir(parents=True, exist_ok=True)
    payload = {
        "model": name,
        "unit": unit,
        "k": 5,
        "views": views,
        "held_out": figures(held),
        "validation": figures(val),
        "config": {"epochs": 10},
        "records": records or [],
    }
    stem = name if views == 1 else f"{name}.views{views}"
    (folder / "blocks" / f"{stem}.json").write_text(json.dumps(payload))


def test_the_section_puts_field_and_cell_models_side_by_side_and_marks_the_targets(
    tmp_path: Path,
) -> None:
    saved(tmp_path, "lenet", "field", 0.85, 0.86)
    saved(tmp_path, "cell_lenet", "cell", 0.93, 0.92)
    saved(tmp_path, "cellnet", "cell", 0.96, 0.90)
    text = blocks_markdown(tmp_path)
    assert text.startswith(BLOCKS_HEADING)
    assert "| LeNet-5 | field | 1 | 85.0% (80.0-88.0)" in text
    assert "| Cell LeNet-5 | cell | 1 | 93.0% (88.0-96.0)" in text
    # The best cell model is chosen on validation blocks (Cell LeNet-5), not on held-out ones.
    assert "Best cell model on the validation blocks: Cell LeNet-5" in text
    assert "accuracy 93.0% (target 95%) ✗" in text


def test_the_section_leads_the_report_and_the_cards_get_the_figures(tmp_path: Path) -> None:
    for name in ("lenet.json", "lenet.keras", "split.csv"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    (tmp_path / "REPORT.md").write_text(
        "# Model report\n\nIntro.\n\n## The paper's comparison\n\nx\n"
    )
    # Held out: 10 Pre-B fields, 3 of them called Pro-B.
    records = [
        {
            "file": f"Pre/WBC-Malignant-Pre-{i:03d}.jpg",
            "class_id": "pre_b",
            "fold": 0,
            "role": "test",
            "probabilities": [0, 0, p, 1 - p],
        }
        for i, p in enumerate([0.9] * 7 + [0.2] * 3, start=1)
    ]
    saved(tmp_path, "lenet", "field", 0.85, 0.86, records)
    assert write_blocks_report(tmp_path) == ["lenet"]
    text = (tmp_path / "REPORT.md").read_text()
    assert text.index(BLOCKS_HEADING) < text.index("## The paper's comparison")
    assert text.count(BLOCKS_HEADING) == 1
    # The edge check: fold 0's ten fields lie within 20 files of its edges, beside no
    # training block (none before it, the validation block after it).
    assert "| LeNet-5 | 0.0% (0) | 70.0% (10) | 0.0% (0) |" in text
    write_blocks_report(tmp_path)
    assert (tmp_path / "REPORT.md").read_text().count(BLOCKS_HEADING) == 1
    card = ModelCard.load(tmp_path / "lenet.json")
    assert card.patient_blocks is not None
    assert card.patient_blocks.accuracy == 0.85
    assert card.patient_blocks.ci95 == pytest.approx([0.8, 0.88])
    assert card.patient_blocks.folds == 5
    # The held-out patients' confusions join the card's known failures.
    assert card.intended_use is not None
    held_out = [f for f in card.intended_use.known_failures if f.split == "patient_blocks"]
    assert [(f.true_class, f.called, f.count, f.of) for f in held_out] == [
        ("pre_b", "pro_b", 3, 10)
    ]


def test_a_class_whose_neighbours_are_not_alike_is_said_to_be_weakly_blocked(
    tmp_path: Path,
) -> None:
    saved(tmp_path, "cell_lenet", "cell", 0.9, 0.9)
    classes = {
        "benign": {
            "n": 10,
            "neighbour_distance": 4.2,
            "random_distance": 4.2,
            "ratio": 0.99,
            "p": 0.34,
        },
        "pro_b": {
            "n": 10,
            "neighbour_distance": 0.7,
            "random_distance": 1.0,
            "ratio": 0.7,
            "p": 0.0,
        },
    }
    (tmp_path / "blocks" / "neighbours.json").write_text(
        json.dumps({"features": "f", "classes": classes})
    )
    text = blocks_markdown(tmp_path)
    assert "| pro_b | 10 | 0.70 | 1.00 | 0.70 | 0.0000 |" in text
    assert "For benign, neighbouring files are no closer" in text
    assert "For benign, pro_b" not in text


def test_the_section_shows_each_served_models_image_level_figures_beside_its_target(
    tmp_path: Path,
) -> None:
    for name in ("lenet", "cellnet"):
        shutil.copy(ROOT / "models" / f"{name}.json", tmp_path / f"{name}.json")
        shutil.copy(ROOT / "models" / f"{name}.keras", tmp_path / f"{name}.keras")
    saved(tmp_path, "cellnet", "cell", 0.9, 0.9)
    cellnet = ModelCard.load(tmp_path / "cellnet.json")
    assert cellnet.test_metrics is not None
    text = blocks_markdown(tmp_path)
    accuracy = f"{100 * cellnet.test_metrics.accuracy:.1f}%"
    mark = "✓" if cellnet.test_metrics.accuracy >= 0.99 else "✗"
    assert f"| CellNet | cell | {accuracy} {mark} |" in text
    # The target is the cell models'; a whole-field model's row carries no mark.
    lenet_row = next(line for line in text.splitlines() if line.startswith("| LeNet-5 | field | 9"))
    assert "✓" not in lenet_row
    assert "✗" not in lenet_row


def test_runs_trained_on_their_validation_blocks_are_reported_beside_the_table(
    tmp_path: Path,
) -> None:
    saved(tmp_path, "cellnet", "cell", 0.92, 0.95)
    trained = {
        "model": "cellnet",
        "unit": "cell",
        "k": 5,
        "views": 1,
        "held_out": figures(0.94),
        "validation": None,
        "validation_trained": True,
        "config": {"epochs": 10},
        "records": [],
    }
    (tmp_path / "blocks" / "cellnet.trainval.json").write_text(json.dumps(trained))
    text = blocks_markdown(tmp_path)
    assert "With four training blocks a fold" in text
    assert "| CellNet | 1 | 10 | 94.0% (89.0-97.0)" in text
    # The main table and the targets still read the run that validated.
    assert "| CellNet | cell | 1 | 92.0% (87.0-95.0)" in text
    assert "accuracy 92.0% (target 95%) ✗" in text


def validation_records(accuracy: float, n: int = 200) -> list[dict[str, Any]]:
    """``n`` Pre-B validation fields, the first ``accuracy`` share of them read right."""
    return [
        {"file": f"Pre/WBC-Malignant-Pre-{i:03d}.jpg", "class_id": "pre_b", "fold": i % 5}
        | {"role": "val", "cells": 3}
        | {
            "probabilities": [0.0, 0.0, 1.0, 0.0]
            if i < round(accuracy * n)
            else [0.0, 1.0, 0.0, 0.0]
        }
        for i in range(n)
    ]


def fewer_blocks(folder: Path, name: str, blocks: int, val: float, held: float) -> None:
    payload = {
        "model": name,
        "unit": "cell",
        "k": 5,
        "views": 1,
        "training_blocks": blocks,
        "held_out": figures(held),
        "validation": figures(val),
        "validation_trained": False,
        "config": {"epochs": 10},
        "records": validation_records(val),
    }
    (folder / "blocks" / f"{name}.train{blocks}.json").write_text(json.dumps(payload))


@pytest.mark.parametrize(
    ("two_blocks", "pays"), [(0.93, True), (0.945, False)], ids=["gain", "within-noise"]
)
def test_the_learning_curve_decides_on_validation_whether_the_refit_stands(
    tmp_path: Path, two_blocks: float, pays: bool
) -> None:
    for name in ("cellnet.json", "cellnet.keras", "split.csv"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    pro_b = [0.0, 0.0, 0.0, 1.0]
    # The refit's records: 4 of 10 held-out Pre-B fields called Pro-B; the protocol's none.
    records = [
        {"file": f"Pre/x-{i}.jpg", "class_id": "pre_b", "fold": 0, "role": "test"}
        | {"probabilities": pro_b if i < 4 else [0.0, 0.0, 1.0, 0.0]}
        for i in range(10)
    ]
    saved(tmp_path, "cellnet", "cell", 0.92, 0.95, validation_records(0.95))
    fewer_blocks(tmp_path, "cellnet", 2, two_blocks, 0.99)
    refit = {"model": "cellnet", "unit": "cell", "k": 5, "views": 1, "validation": None}
    refit |= {"held_out": figures(0.96), "validation_trained": True, "config": {"epochs": 10}}
    (tmp_path / "blocks" / "cellnet.trainval.json").write_text(
        json.dumps(refit | {"records": records})
    )
    text = blocks_markdown(tmp_path)
    assert ("| CellNet, refit on 4 blocks | cell | 1 | 96.0% (91.0-99.0)" in text) is pays
    assert ("Held out, refit on its 4 blocks: accuracy 96.0% (target 95%) ✓" in text) is pays
    assert ("Held out: accuracy 92.0% (target 95%) ✗" in text) is not pays
    assert ("For CellNet the learning curve below shows" in text) is pays
    assert ("Nothing validates these runs" in text) is not pays
    write_blocks_report(tmp_path)
    card = ModelCard.load(tmp_path / "cellnet.json")
    assert card.patient_blocks is not None
    assert card.patient_blocks.accuracy == (0.96 if pays else 0.92)
    assert ("refit on its four other blocks" in card.patient_blocks.method) is pays
    assert card.intended_use is not None
    held_out = [f for f in card.intended_use.known_failures if f.split == "patient_blocks"]
    assert [(f.true_class, f.called, f.count) for f in held_out] == (
        [("pre_b", "pro_b", 4)] if pays else []
    )


@pytest.mark.parametrize(
    ("two_blocks", "pays"), [(0.93, True), (0.945, False)], ids=["gain", "within-noise"]
)
def test_the_learning_curve_reads_the_gain_of_more_blocks_on_validation_only(
    tmp_path: Path, two_blocks: float, pays: bool
) -> None:
    saved(tmp_path, "cellnet", "cell", 0.92, 0.95, validation_records(0.95))
    fewer_blocks(tmp_path, "cellnet", 2, two_blocks, 0.99)
    refit = {"model": "cellnet", "k": 5, "views": 1, "validation": None, "records": []}
    refit |= {"held_out": figures(0.96), "validation_trained": True, "config": {"epochs": 10}}
    (tmp_path / "blocks" / "cellnet.trainval.json").write_text(json.dumps(refit))
    text = blocks_markdown(tmp_path)
    assert "A learning curve on the validation blocks" in text
    assert f"| CellNet | 2 | {100 * two_blocks:.1f}% (" in text
    assert "| CellNet | 3 | 95.0% (90.0-98.0)" in text
    gain = f"gains {100 * (0.95 - two_blocks):.1f} points on validation"
    assert gain in text
    assert "paired block-bootstrap 95% interval" in text
    assert ("more patients are shown to pay" in text) is pays
    # A run trained on its validation block is no point of the curve.
    assert "| CellNet | 4 |" not in text


def test_a_model_served_in_eight_views_stands_on_its_runs_scored_in_eight_views(
    tmp_path: Path,
) -> None:
    for name in ("cellnet.json", "cellnet.keras", "split.csv"):
        shutil.copy(ROOT / "models" / name, tmp_path / name)
    ModelCard.update(tmp_path / "cellnet.json", inference=InferenceSpec.for_views(8))
    saved(tmp_path, "cellnet", "cell", 0.92, 0.95, validation_records(0.95))
    saved(tmp_path, "cellnet", "cell", 0.93, 0.96, validation_records(0.96), views=8)
    fewer_blocks(tmp_path, "cellnet", 2, 0.93, 0.99)
    for views, held in ((1, 0.96), (8, 0.97)):
        refit = {"model": "cellnet", "unit": "cell", "k": 5, "views": views, "validation": None}
        refit |= {"held_out": figures(held), "validation_trained": True, "records": []}
        stem = "cellnet" if views == 1 else "cellnet.views8"
        (tmp_path / "blocks" / f"{stem}.trainval.json").write_text(
            json.dumps(refit | {"config": {"epochs": 16}})
        )
    text = blocks_markdown(tmp_path)
    # The lead table and the targets read the runs in the served views.
    assert "| CellNet | cell | 8 | 93.0% (88.0-96.0)" in text
    assert "| CellNet, refit on 4 blocks, 16 epochs | cell | 8 | 97.0% (92.0-100.0)" in text
    assert "Held out, refit on its 4 blocks: accuracy 97.0% (target 95%) ✓" in text
    # The learning curve compares one view with one view: the gain of more patients alone.
    assert "| CellNet | 3 | 95.0% (90.0-98.0)" in text
    assert "gains 2.0 points on validation" in text
    write_blocks_report(tmp_path)
    card = ModelCard.load(tmp_path / "cellnet.json")
    assert card.patient_blocks is not None
    assert card.patient_blocks.accuracy == 0.97
    assert "cell-blocks --epochs 16 --views 8 --train-on-validation" in card.patient_blocks.method
    # Without the eight views' runs, the one-view runs stand, and the table says so.
    for path in (tmp_path / "blocks").glob("cellnet.views8*"):
        path.unlink()
    assert "| CellNet, refit on 4 blocks, 16 epochs | cell | 1 | 96.0%" in blocks_markdown(tmp_path)


def test_a_refit_the_learning_curve_calls_for_but_not_yet_run_is_named_with_its_command(
    tmp_path: Path,
) -> None:
    saved(tmp_path, "cellnet", "cell", 0.92, 0.95, validation_records(0.95))
    fewer_blocks(tmp_path, "cellnet", 2, 0.93, 0.99)
    text = blocks_markdown(tmp_path)
    assert "more patients are shown to pay" in text
    assert (
        "Its refit on all four blocks has not been run yet (`python -m training cell-blocks "
        "--model cellnet --epochs 10 --train-on-validation`): its protocol run stands"
    ) in text
    assert "refit on 4 blocks |" not in text
    assert "Held out: accuracy 92.0% (target 95%) ✗" in text


def test_a_saved_refit_or_a_gain_within_noise_names_no_pending_refit(tmp_path: Path) -> None:
    saved(tmp_path, "cellnet", "cell", 0.92, 0.95, validation_records(0.95))
    fewer_blocks(tmp_path, "cellnet", 2, 0.945, 0.99)
    assert "has not been run yet" not in blocks_markdown(tmp_path)
    fewer_blocks(tmp_path, "cellnet", 2, 0.93, 0.99)
    refit = {"model": "cellnet", "unit": "cell", "k": 5, "views": 1, "validation": None}
    refit |= {"held_out": figures(0.96), "validation_trained": True, "config": {"epochs": 10}}
    (tmp_path / "blocks" / "cellnet.trainval.json").write_text(json.dumps(refit | {"records": []}))
    assert "has not been run yet" not in blocks_markdown(tmp_path)


def test_benign_led_fields_whose_blasts_outweigh_benign_are_counted(tmp_path: Path) -> None:
    def record(class_id: str, role: str, probabilities: list[float] | None) -> dict[str, Any]:
        return {
            "file": "x.jpg",
            "class_id": class_id,
            "fold": 0,
            "role": role,
            "probabilities": probabilities,
        }

    records = [
        record("pre_b", "test", [0.40, 0.15, 0.30, 0.15]),  # benign leads, blasts are 60%
        record("benign", "test", [0.60, 0.15, 0.15, 0.10]),
        record("benign", "test", [0.40, 0.10, 0.20, 0.30]),
        record("pro_b", "test", [0.05, 0.05, 0.10, 0.80]),  # a malignant class leads
        record("pre_b", "validation", [0.40, 0.15, 0.30, 0.15]),  # not held out
        record("pre_b", "test", None),  # no whole leukocyte: no probabilities
    ]
    saved(tmp_path, "lenet", "field", 0.85, 0.86, records)
    assert "| LeNet-5 | 2 of 4 | 1 |" in blocks_markdown(tmp_path)
