"""A one-epoch training run on a few synthetic images writes every artifact.

Each architecture is trained once for the module (``trained``); the tests that read a
trained model share that run, and the one that changes it works on a copy.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.model_card import ModelCard
from app.core.model_store import load_model
from training.architectures import FIELD_ARCHITECTURES
from training.cli import main
from training.data import discover
from training.train import TrainConfig, train


def cli(line: str, **paths: Path) -> int:
    """``python -m training`` with ``line``'s arguments and ``--name PATH`` for each path."""
    args = shlex.split(line)
    for name, path in paths.items():
        args += [f"--{name.replace('_', '-')}", str(path)]
    return main(args)


COLOURS = {
    "Benign": (200, 80, 80),
    "Early": (80, 200, 80),
    "Pre": (80, 80, 200),
    "Pro": (200, 200, 80),
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(8):
            arr = np.clip(rng.normal(colour, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{name}-{i}.png")
    return root


Trained = Callable[[str], tuple[Path, ModelCard]]


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The folder and card of a one-epoch run of an architecture, trained on first use."""
    runs: dict[str, tuple[Path, ModelCard]] = {}

    def run(name: str) -> tuple[Path, ModelCard]:
        if name not in runs:
            out = tmp_path_factory.mktemp(f"trained-{name}")
            runs[name] = out, train(TrainConfig(model=name, epochs=1, batch_size=8), tiny_data, out)
        return runs[name]

    return run


@pytest.mark.parametrize("name", FIELD_ARCHITECTURES)
def test_one_epoch_writes_every_artifact(trained: Trained, name: str) -> None:
    folder, card = trained(name)
    for suffix in (
        ".keras",
        ".json",
        ".ood.npz",
        ".curves.png",
        ".confusion.png",
        ".roc.png",
        ".reliability.png",
    ):
        assert (folder / f"{name}{suffix}").stat().st_size > 0
    assert (folder / "split.csv").is_file()
    assert card == ModelCard.load(folder / f"{name}.json")
    arch = FIELD_ARCHITECTURES[name]
    assert card.name == name
    assert card.architecture == arch.display_name
    assert card.class_ids == ["benign", "early_pre_b", "pre_b", "pro_b"]
    assert card.input_size == arch.input_size
    assert card.preprocessing["decode"]
    assert card.training["epochs_run"] == 1
    assert card.training["dropout"] == arch.dropout
    assert card.split_manifest.sha256
    assert card.parameters > 0
    assert card.file_size_bytes > 0
    assert card.test_metrics is not None
    assert card.test_metrics.n_images > 0
    assert card.calibration.temperature > 0
    assert card.calibration.uncertain_below is not None
    assert card.ood is not None
    assert card.ood.threshold > 0
    assert card.intended_use is not None
    assert card.intended_use.data.images == 32
    assert card.intended_use.known_failures[0].of == sum(card.test_metrics.confusion_matrix[0])
    views = arch.views
    assert card.views == views
    loaded = load_model(folder, name)
    assert loaded.views == views
    probs = loaded.predict(np.zeros((1, loaded.input_size, loaded.input_size, 3), np.float32))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)


def test_cli_train_and_evaluate_round_trip(tiny_data, tmp_path, capsys) -> None:
    assert (
        cli(
            "train --model lenet --epochs 1 --background-swap 0.5 --label-smoothing 0.2",
            data_dir=tiny_data,
            out=tmp_path,
        )
        == 0
    )
    capsys.readouterr()
    recorded = ModelCard.load(tmp_path / "lenet.json").training
    assert recorded["augmentation"]["background_swap_p"] == 0.5
    assert recorded["label_smoothing"] == 0.2
    assert recorded["dropout"] == FIELD_ARCHITECTURES["lenet"].dropout
    assert cli("evaluate --json", data_dir=tiny_data, models_dir=tmp_path) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == "lenet"
    assert result["n_images"] == len(discover(tiny_data))
    assert set(result["per_class"]) == {"benign", "early_pre_b", "pre_b", "pro_b"}
    assert np.array(result["confusion_matrix"]).sum() == result["n_images"]


def test_cli_set_views_rescores_the_same_weights(
    trained: Trained, tiny_data, tmp_path, capsys
) -> None:
    shutil.copytree(trained("sequential")[0], tmp_path, dirs_exist_ok=True)  # changed below
    before = json.loads((tmp_path / "sequential.json").read_text())
    weights = load_model(tmp_path, "sequential").keras_model.get_weights()
    target = 1 if before["inference"]["views"] == 8 else 8
    capsys.readouterr()
    assert (
        cli(
            f"set-views --model sequential --views {target}",
            data_dir=tiny_data,
            models_dir=tmp_path,
        )
        == 0
    )
    assert f"[sequential] {target} view(s)" in capsys.readouterr().out
    after = json.loads((tmp_path / "sequential.json").read_text())
    assert after["inference"]["views"] == target
    assert after["training"] == before["training"]
    assert after["trained_at"] == before["trained_at"]
    assert after["test_metrics"]["n_images"] > 0
    assert "temperature" in after["calibration"]
    assert "threshold" in after["ood"]
    reloaded = load_model(tmp_path, "sequential")
    assert reloaded.views == target
    for a, b in zip(reloaded.keras_model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(SystemExit):
        cli("set-views --model sequential --views 4", data_dir=tiny_data, models_dir=tmp_path)
    # A folder none of whose images is in the split: refused, the model left as it was.
    other = tmp_path / "other"
    for name, colour in COLOURS.items():
        (other / name).mkdir(parents=True)
        Image.new("RGB", (64, 64), colour[::-1]).save(other / name / "x.png")
    capsys.readouterr()
    assert (
        cli(
            f"set-views --model sequential --views {before['inference']['views']}",
            data_dir=other,
            models_dir=tmp_path,
        )
        == 2
    )
    assert "split" in capsys.readouterr().err
    assert json.loads((tmp_path / "sequential.json").read_text()) == after


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class folders"),
        ({"Lymphocytes": 1}, "unknown class folder"),
    ],
)
def test_cli_refuses_malformed_data_dir(tmp_path, capsys, layout, message: str) -> None:
    for folder, n in layout.items():
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / folder / f"{i}.png")
    assert cli("train --model lenet --epochs 1", data_dir=tmp_path, out=tmp_path / "out") == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_unreadable_image(tiny_data, tmp_path, capsys) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "Benign" / "broken.jpg").write_bytes(b"not a jpeg")
    assert cli("train --model lenet --epochs 1", data_dir=data, out=tmp_path / "out") == 2
    assert "unreadable image" in capsys.readouterr().err


def test_cli_refuses_a_swap_share_outside_0_to_1(tiny_data, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli("train --model lenet --background-swap 1.5", data_dir=tiny_data)
    assert exited.value.code == 2
    assert "not a probability" in capsys.readouterr().err


def test_cli_needs_a_data_dir(monkeypatch, capsys) -> None:
    monkeypatch.delenv("ALL_DATA_DIR", raising=False)
    assert cli("evaluate") == 2
    assert "ALL_DATA_DIR" in capsys.readouterr().err


def test_report_sections_on_a_trained_model(trained: Trained, tiny_data, capsys) -> None:
    from training.heat_eval import heat_markdown
    from training.heat_eval import measure as measure_heat
    from training.report import measure, render

    folder = trained("lenet")[0]  # read only
    samples = discover(tiny_data)
    rows = measure(folder, samples)
    assert [r.name for r in rows] == ["lenet"]
    assert rows[0].base.n_images == len(samples)
    heat = measure_heat([r.model for r in rows], samples, per_class=2)
    assert heat["lenet"]["layer"] == "c3_relu"
    assert sum(c["n"] for c in heat["lenet"]["per_class"].values()) == heat["lenet"]["overall"]["n"]
    text = render(rows, len(samples), extra_sections=[heat_markdown(heat)])
    assert "| LeNet-5 | 95.75% |" in text
    assert "## Where the models look (Grad-CAM)" in text
    capsys.readouterr()
    assert (
        cli(
            "heat --split test --per-class 1 --layer c1_relu",
            models_dir=folder,
            data_dir=tiny_data,
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "on 1 test images per class" in printed
    assert "| LeNet-5 | `c1_relu` |" in printed
