"""The model card: the one reader and writer of a model's metadata JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.classes import CLASS_IDS
from app.core.model_card import (
    Calibration,
    HeatRuleSpec,
    InferenceSpec,
    ModelCard,
    ModelCardError,
    OodSection,
    TestMetrics,
)
from app.core.model_files import model_files, model_names


def full_card() -> ModelCard:
    return ModelCard(
        name="lenet",
        architecture="LeNet-5",
        version="9.9.9",
        input_size=150,
        inference=InferenceSpec.for_views(8),
        training={"epochs": 3, "augmentation": {"hue": 0.1}},
        history={"loss": [1.0, 0.5]},
        calibration=Calibration(method="t", temperature=1.5, uncertain_below=0.8),
        test_metrics=TestMetrics(
            n_images=4,
            accuracy=0.75,
            macro_f1=0.7,
            per_class={"benign": {"recall": 1.0}},
            confusion_matrix=[[1, 0], [1, 2]],
            ece=0.1,
        ),
        ood=OodSection(threshold=1.2, component_scales={"features": 2.0, "image": 3.0}),
    )


def test_save_then_load_gives_the_same_card(tmp_path: Path) -> None:
    card = full_card()
    card.save(tmp_path / "lenet.json")
    again = ModelCard.load(tmp_path / "lenet.json")
    assert again == card
    assert again.to_json() == (tmp_path / "lenet.json").read_text()
    assert not list(tmp_path.glob("*.partial"))


def test_missing_fields_get_their_one_default() -> None:
    card = ModelCard.from_dict({"name": "m", "version": "1", "input_size": 64})
    assert card.class_ids == list(CLASS_IDS)
    assert card.views == 1
    assert card.inference == InferenceSpec()
    assert card.calibration.temperature == 1.0
    assert card.calibration.uncertain_below is None  # no threshold: nothing is uncertain
    assert card.ood is None
    assert card.test_metrics is None
    assert card.test_accuracy is None
    assert card.display_name == "m"


def test_derived_properties() -> None:
    card = full_card()
    assert card.display_name == "LeNet-5"
    assert card.views == 8
    assert card.test_accuracy == 0.75


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": "1", "input_size": 64}, "no 'name'"),
        ({"name": "m", "input_size": 64}, "no 'version'"),
        ({"name": "m", "version": "1"}, "no 'input_size'"),
        ({"name": "m", "version": "1", "input_size": 64, "colour": "red"}, "unknown keys: colour"),
        (
            {"name": "m", "version": "1", "input_size": 64, "calibration": {"temprature": 2}},
            "card.calibration has unknown keys: temprature",
        ),
        ({"name": "m", "version": "1", "input_size": "64"}, "card.input_size must be an integer"),
        ({"name": "m", "version": "1", "input_size": True}, "card.input_size must be an integer"),
        (
            {"name": "m", "version": "1", "input_size": 64, "calibration": {"temperature": "hot"}},
            "card.calibration.temperature must be a number",
        ),
        (
            {"name": "m", "version": "1", "input_size": 64, "ood": []},
            "card.ood must be a JSON object",
        ),
        (
            {"name": "m", "version": "1", "input_size": 64, "history": [1]},
            "card.history must be an object",
        ),
    ],
)
def test_bad_cards_are_refused_with_the_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data)


def test_load_names_the_file_of_a_bad_card(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(ModelCardError, match="m.json is not valid JSON"):
        ModelCard.load(path)
    path.write_text(json.dumps({"name": "m", "version": "1", "input_size": 64, "x": 1}))
    with pytest.raises(ModelCardError, match=r"m\.json: card has unknown keys: x"):
        ModelCard.load(path)


def test_only_supported_view_counts() -> None:
    assert InferenceSpec.for_views(1).views == 1
    with pytest.raises(ValueError, match="views must be one of"):
        InferenceSpec.for_views(4)


def test_a_models_folder_lists_models_that_have_both_files(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.keras").write_bytes(b"")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "d.json").write_text("{}")
    assert model_names(tmp_path) == ["a", "c"]
    files = model_files(tmp_path, "a")
    assert (files.weights.name, files.card.name, files.ood.name) == (
        "a.keras",
        "a.json",
        "a.ood.npz",
    )


def test_the_heat_rule_round_trips_and_is_strict(tmp_path: Path) -> None:
    card = full_card()
    card.heat_rule = HeatRuleSpec(
        method="fitted", min_density=0.31, val_correct=300, val_wrong=2, val_fires_on_correct=0.1
    )
    card.save(tmp_path / "lenet.json")
    again = ModelCard.load(tmp_path / "lenet.json")
    assert isinstance(again.heat_rule, HeatRuleSpec)
    assert again.heat_rule == card.heat_rule
    assert json.loads((tmp_path / "lenet.json").read_text())["heat_rule"]["min_density"] == 0.31
    minimal = {"name": "m", "version": "1", "input_size": 64}
    assert ModelCard.from_dict(minimal).heat_rule is None  # not fitted
    with pytest.raises(ModelCardError, match="card.heat_rule has unknown keys: min_densty"):
        ModelCard.from_dict({**minimal, "heat_rule": {"min_densty": 0.3}})
    with pytest.raises(ModelCardError, match="card.heat_rule.min_density must be a number"):
        ModelCard.from_dict({**minimal, "heat_rule": {"min_density": "low"}})


def test_update_sets_named_fields_and_refuses_unknown_ones(tmp_path) -> None:
    from app.core.model_card import CaseRuleSpec, ModelCard, ModelCardError

    path = tmp_path / "m.json"
    ModelCard(name="m", version="1.0.0", input_size=224).save(path)
    ModelCard.update(path, case_rule=CaseRuleSpec(escalate_at=0.9))
    assert ModelCard.load(path).case_rule == CaseRuleSpec(escalate_at=0.9)
    with pytest.raises(ModelCardError, match="no colour"):
        ModelCard.update(path, colour="red")


def test_the_intended_use_round_trips_and_is_strict(tmp_path: Path) -> None:
    from app.core.model_card import DataProvenance, IntendedUse, KnownFailure

    card = full_card()
    card.intended_use = IntendedUse(
        purpose="screening",
        out_of_scope=["bone marrow"],
        known_failures=[KnownFailure("benign", "early_pre_b", 6, 67, "test", "6 of 67")],
        data=DataProvenance(source="Taleqani Hospital", doi="10.34740/x", patients=89),
    )
    card.save(tmp_path / "lenet.json")
    again = ModelCard.load(tmp_path / "lenet.json")
    assert again == card
    assert isinstance(again.intended_use, IntendedUse)
    assert isinstance(again.intended_use.known_failures[0], KnownFailure)
    assert isinstance(again.intended_use.data, DataProvenance)
    saved = json.loads((tmp_path / "lenet.json").read_text())["intended_use"]
    assert saved["known_failures"][0]["called"] == "early_pre_b"
    minimal = {"name": "m", "version": "1", "input_size": 64}
    assert ModelCard.from_dict(minimal).intended_use is None  # a card from before
    with pytest.raises(ModelCardError, match=r"known_failures\[0\] has unknown keys: colour"):
        ModelCard.from_dict({**minimal, "intended_use": {"known_failures": [{"colour": 1}]}})
    with pytest.raises(ModelCardError, match=r"known_failures\[1\] must be a JSON object"):
        ModelCard.from_dict({**minimal, "intended_use": {"known_failures": [{}, "x"]}})
    with pytest.raises(ModelCardError, match="intended_use.data.patients must be an integer"):
        ModelCard.from_dict({**minimal, "intended_use": {"data": {"patients": "89"}}})
