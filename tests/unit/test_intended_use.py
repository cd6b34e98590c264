"""The model card's intended use: one source for its text, known failures counted from the
test confusion matrix, and the committed cards carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.classes import CLASS_IDS
from app.core.model_card import IntendedUse, ModelCard, TestMetrics
from app.core.model_files import model_names
from tests.support.models import ROOT
from training.block_results import standing
from training.intended_use import (
    OUT_OF_SCOPE,
    PURPOSE,
    block_failures,
    fill,
    for_card,
    known_failures,
)

COMMITTED = ROOT / "models"


def test_benign_called_early_pre_b_comes_first_then_every_screening_error_by_count() -> None:
    metrics = TestMetrics(
        confusion_matrix=[[61, 5, 0, 1], [4, 128, 0, 0], [1, 6, 122, 0], [0, 0, 0, 108]]
    )
    failures = known_failures(metrics)
    assert [(f.true_class, f.called, f.count, f.of) for f in failures] == [
        ("benign", "early_pre_b", 5, 67),
        ("early_pre_b", "benign", 4, 132),
        ("benign", "pro_b", 1, 67),
        ("pre_b", "benign", 1, 129),
    ]  # Pre-B called Early Pre-B (6) leaves the screening answer as it is
    assert failures[0].summary.startswith("5 of 67 (7.5%) Benign (hematogones) test images")
    assert "look alike" in failures[0].summary
    assert "missed malignancy" in failures[1].summary
    assert failures[2].summary.endswith("Pro-B ALL: hematogones called malignant.")
    assert all(f.split == "test" for f in failures)


def test_benign_called_early_pre_b_is_listed_even_uncounted() -> None:
    clean = known_failures(TestMetrics(confusion_matrix=[[5, 0, 0, 0]] + [[0, 5, 0, 0]] * 3))
    assert [(f.called, f.count, f.of) for f in clean] == [("early_pre_b", 0, 5)]
    (unscored,) = known_failures(None)
    assert unscored.called == "early_pre_b"
    assert "Not counted" in unscored.summary


def _record(class_id: str, called: str | None, role: str = "test") -> dict[str, object]:
    probabilities = None if called is None else [0.9 if c == called else 0.03 for c in CLASS_IDS]
    return {"class_id": class_id, "role": role, "probabilities": probabilities}


def test_held_out_patients_confusions_of_a_twentieth_of_a_class_are_listed_by_count() -> None:
    records = [
        *[_record("pre_b", "pre_b")] * 80,
        *[_record("pre_b", "pro_b")] * 15,
        *[_record("pre_b", "early_pre_b")] * 4,  # 4 of 100: under a twentieth
        _record("pre_b", None),  # unanswered: in no class
        *[_record("early_pre_b", "early_pre_b")] * 90,
        *[_record("early_pre_b", "benign")] * 10,
        *[_record("benign", "early_pre_b", role="val")] * 50,  # validation: not held out
        *[_record("benign", "benign")] * 40,
    ]
    failures = block_failures(records)
    assert [(f.true_class, f.called, f.count, f.of) for f in failures] == [
        ("pre_b", "pro_b", 15, 100),
        ("early_pre_b", "benign", 10, 100),
    ]
    assert all(f.split == "patient_blocks" for f in failures)
    assert failures[0].summary.startswith("On patients held out of training")
    assert "15 of 100 (15.0%) Pre-B ALL fields called Pro-B ALL" in failures[0].summary
    assert "subtype" in failures[0].summary
    assert "missed malignancy" in failures[1].summary


def test_fill_writes_the_section_and_changes_nothing_else(tmp_path: Path) -> None:
    rows = ["file,sha256,class,split", "a,1,benign,train", "b,2,pre_b,test"]
    (tmp_path / "split.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "m.keras").write_bytes(b"")
    card = ModelCard(name="m", version="1", input_size=64, test_metrics=TestMetrics())
    card.save(tmp_path / "m.json")
    assert fill(tmp_path) == ["m"]
    again = ModelCard.load(tmp_path / "m.json")
    assert again.intended_use is not None
    assert again.intended_use.data.images == 2
    again.intended_use = None
    assert again == card


@pytest.mark.parametrize("name", model_names(COMMITTED))
def test_the_committed_cards_state_their_intended_use(name: str) -> None:
    card = ModelCard.load(COMMITTED / f"{name}.json")
    use = card.intended_use
    assert isinstance(use, IntendedUse)
    assert use == for_card(card, COMMITTED)  # in step with the one source of its text
    assert use.purpose == PURPOSE
    assert use.out_of_scope == OUT_OF_SCOPE
    scope = " ".join(use.out_of_scope)
    assert "stain" in scope
    assert "Bone marrow" in scope
    assert "other laboratories" in scope
    first, metrics = use.known_failures[0], card.test_metrics
    assert metrics is not None
    benign = metrics.per_class["benign"]["support"]  # 66 answered by a cell model
    assert (first.true_class, first.called, first.of) == ("benign", "early_pre_b", benign)
    assert benign in (66, 67)
    assert first.count == metrics.confusion_matrix[0][1]
    # Every committed model was cross-validated over patient blocks: the confusions of the
    # run that stands for it follow.
    run = standing(COMMITTED, name)
    assert run is not None
    held_out = [f for f in use.known_failures if f.split == "patient_blocks"]
    assert held_out == block_failures(run["records"])
    assert all(f.count >= 0.05 * f.of for f in held_out)
    data = use.data
    assert "Taleqani Hospital, Tehran" in data.source
    assert data.doi == "10.34740/KAGGLE/DSV/2175623"
    assert data.patients == 89
    assert "flow cytometry" in data.labels
    assert "10%" in data.held_back
    assert json.loads((COMMITTED / f"{name}.json").read_text())["intended_use"]["purpose"]
