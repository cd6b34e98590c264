"""The cell commands on a small synthetic data set: cross-validation over blocks, and a
one-epoch training run that writes a cell model the app serves."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from app.core.model_card import ModelCard
from app.core.service import InferenceService
from tests.support.images import ImageFactory
from training.cli import main
from training.data import discover
from training.split import MANIFEST_NAME, assign_splits, write_manifest

# Leukocyte diameter (in red cells) per class folder: the classes differ in their cells.
DIAMETERS = {"Benign": 1.1, "Early": 1.4, "Pre": 1.7, "Pro": 2.0}


def cli(line: str) -> int:
    return main(shlex.split(line))


@pytest.fixture(scope="module")
def tiny_cells(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-cells")
    for k, (folder, diameter) in enumerate(DIAMETERS.items()):
        (root / folder).mkdir()
        for i in range(8):
            x = 0.25 + 0.05 * (i % 4)  # fields differ beyond their noise (no near duplicates)
            cells = [(x, 0.3, diameter), (0.7, 0.5 + 0.04 * k, diameter)]
            field = ImageFactory.cell_field(cells, seed=1000 * k + i)
            field.save(root / folder / f"WBC-{folder}-{i + 1:03d}.png")
    return root


def test_cell_blocks_records_every_field_once_with_its_figures(
    tiny_cells: Path, tmp_path: Path
) -> None:
    line = f"cell-blocks --model cell_lenet --data-dir {tiny_cells} --models-dir {tmp_path}"
    assert cli(f"{line} --folds 3 --epochs 1 --views 8 2") == 0
    result = json.loads((tmp_path / "blocks" / "cell_lenet.json").read_text())
    # The same trained folds scored again in 2 and in 8 orientations, a file for each.
    for views in (2, 8):
        viewed = json.loads((tmp_path / "blocks" / f"cell_lenet.views{views}.json").read_text())
        assert viewed["views"] == views
        assert viewed["folds"] == result["folds"]
        assert len(viewed["records"]) == len(result["records"])
    held = [r for r in result["records"] if r["role"] == "test"]
    assert sorted(r["file"] for r in held) == sorted(
        f"{p.parent.name}/{p.name}" for p in tiny_cells.rglob("*.png")
    )
    assert result["unit"] == "cell"
    assert result["k"] == 3
    assert set(result["held_out"]["ci95"]) == {
        "accuracy",
        "macro_f1",
        "benign_recall",
        "malignant_recall",
    }
    assert all(r["cells"] == 2 for r in held)


def test_cell_blocks_can_train_on_the_validation_blocks_and_score_only_the_held_out(
    tiny_cells: Path, tmp_path: Path
) -> None:
    line = f"cell-blocks --model cell_lenet --data-dir {tiny_cells} --models-dir {tmp_path}"
    assert cli(f"{line} --folds 3 --epochs 1 --train-on-validation") == 0
    assert not (tmp_path / "blocks" / "cell_lenet.json").exists()
    result = json.loads((tmp_path / "blocks" / "cell_lenet.trainval.json").read_text())
    assert result["validation_trained"] is True
    assert result["validation"] is None
    assert {r["role"] for r in result["records"]} == {"test"}
    assert len(result["records"]) == len(list(tiny_cells.rglob("*.png")))
    assert all(f["epochs_run"] == 1 and f["best_epoch"] is None for f in result["folds"])
    assert result["held_out"]["n_fields"] == len(result["records"])
    assert result["training_blocks"] == 2


def test_cell_blocks_learning_curve_trains_on_fewer_blocks_and_scores_the_same_validation(
    tiny_cells: Path, tmp_path: Path
) -> None:
    line = f"cell-blocks --model cell_lenet --data-dir {tiny_cells} --models-dir {tmp_path}"
    assert cli(f"{line} --folds 4 --epochs 1 --training-blocks 1") == 0
    assert not (tmp_path / "blocks" / "cell_lenet.json").exists()
    result = json.loads((tmp_path / "blocks" / "cell_lenet.train1.json").read_text())
    assert result["training_blocks"] == 1
    assert result["validation"]["n_fields"] == len(list(tiny_cells.rglob("*.png")))
    assert {r["role"] for r in result["records"]} == {"val", "test"}
    assert cli(f"{line} --folds 4 --epochs 1 --training-blocks 3") != 0


def test_train_cells_writes_a_cell_model_the_app_serves(tiny_cells: Path, tmp_path: Path) -> None:
    samples = discover(tiny_cells)
    write_manifest(samples, assign_splits(samples), tiny_cells, tmp_path / MANIFEST_NAME)
    train = f"train-cells --model cell_lenet --epochs 1 --data-dir {tiny_cells} --out {tmp_path}"
    assert cli(f"{train} --views 8") == 0
    card = ModelCard.load(tmp_path / "cell_lenet.json")
    assert card.unit == "cell"
    assert card.views == 8
    assert card.inference.description.startswith("mean of each cell's logits")
    assert card.input_size == 64
    assert card.test_metrics is not None
    assert card.calibration.temperature > 0
    assert card.calibration.uncertain_below is not None
    assert card.ood is not None
    assert (tmp_path / "cell_lenet.ood.npz").is_file()
    assert card.intended_use is not None
    # The guard alone fitted again, as after a change to the image statistics: the network
    # and its calibration are kept, the guard's file and its checksum on the card follow.
    weights = (tmp_path / "cell_lenet.keras").read_bytes()
    (tmp_path / "cell_lenet.ood.npz").unlink()
    fit = f"fit-ood --model cell_lenet --data-dir {tiny_cells} --models-dir {tmp_path}"
    assert cli(fit) == 0
    refitted = ModelCard.load(tmp_path / "cell_lenet.json")
    assert refitted.ood is not None
    assert (
        refitted.ood.sha256
        == hashlib.sha256((tmp_path / "cell_lenet.ood.npz").read_bytes()).hexdigest()
    )
    assert refitted.calibration == card.calibration
    assert (tmp_path / "cell_lenet.keras").read_bytes() == weights
    field = ImageFactory.encode(ImageFactory.cell_field([(0.4, 0.4, 1.7)]))
    service = InferenceService(tmp_path, default_model="cell_lenet").load()
    prediction = service.classify(field)
    assert prediction.cells is not None
    assert len(prediction.cells.cells) == 1
    assert prediction.ood is not None
    # One view instead of eight, the weights kept: every fitted figure follows the new outputs.
    views = f"set-views --model cell_lenet --views 1 --data-dir {tiny_cells}"
    assert cli(f"{views} --models-dir {tmp_path}") == 0
    one_view = ModelCard.load(tmp_path / "cell_lenet.json")
    assert one_view.views == 1
    assert (tmp_path / "cell_lenet.keras").read_bytes() == weights
    assert one_view.training == card.training
    assert one_view.calibration.temperature != card.calibration.temperature
    assert one_view.ood is not None
    assert one_view.ood.sha256 != refitted.ood.sha256
    single = InferenceService(tmp_path, default_model="cell_lenet").load().classify(field)
    assert single.cells is not None
    assert single.probabilities != prediction.probabilities
