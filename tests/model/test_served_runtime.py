"""The models as served (LiteRT) give TensorFlow's probabilities within 1e-4: a field
model's, and a cell model's for each cell and for the field its cells answer."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.core.cells.model import LoadedCellModel
from app.core.cells.serving import ServedCellModel
from app.core.errors import AnalysisRefusedError
from app.core.lite_network import all_orientations, kept, opened, run_kept
from app.core.model_store import load_model
from app.core.orientations import all_orientations as tf_orientations
from app.core.preprocessing import load_image, prepare
from app.core.reading import decode_cells
from app.core.service import InferenceService
from tests.support.images import smear_images, synth_images
from tests.support.models import data_root, field_cards

TOLERANCE = 1e-4


def model_inputs(files: list[bytes], card: object) -> np.ndarray:
    size, scale = card.input_size, card.scale  # type: ignore[attr-defined]
    return np.stack([prepare(load_image(d), size, scale).x for d in files])


def tensorflow_probabilities(loaded: object, x: np.ndarray) -> np.ndarray:
    logits = loaded._logits_fn(tf.constant(x)).numpy()  # type: ignore[attr-defined]
    return np.asarray(loaded.probabilities(logits))  # type: ignore[attr-defined]


def test_orientations_are_tensorflows() -> None:
    x = np.random.default_rng(0).random((2, 5, 5, 3), np.float32)
    assert np.array_equal(all_orientations(x), tf_orientations(tf.constant(x)).numpy())


def check_probabilities(service: InferenceService, files: list[bytes]) -> None:
    for card in field_cards(service):
        loaded = service.field_model(card.name).model
        assert loaded.network is not None, f"{card.name} is not served on LiteRT"
        x = model_inputs(files, card)
        served = loaded.predict(x)
        difference = float(np.abs(served - tensorflow_probabilities(loaded, x)).max())
        assert difference <= TOLERANCE, f"{card.name}: {difference:.1e}"


def field_crops(files: list[bytes]) -> list[np.ndarray]:
    """Each photograph's cell crops, for those where cells are read."""
    read = []
    for data in files:
        try:
            read.append(decode_cells(data).cells.crops)
        except AnalysisRefusedError:
            continue
    return [c for c in read if len(c)]


def cell_model(service: InferenceService, name: str) -> LoadedCellModel:
    served = service.served(name)
    assert isinstance(served, ServedCellModel)
    return served.model


def check_cell_probabilities(service: InferenceService, files: list[bytes]) -> None:
    fields = field_crops(files)
    assert fields, "no photograph had cells to read"
    for card in service.models():
        if card.unit != "cell":
            continue
        served = cell_model(service, card.name)
        assert served.network is not None, f"{card.name} is not served on LiteRT"
        tensorflow = dataclasses.replace(served, network=None)
        for crops in fields:
            mine, theirs = served.run(crops), tensorflow.run(crops)
            cells = served.cell_probabilities(mine) - tensorflow.cell_probabilities(theirs)
            answer, reference = served.answer(mine), tensorflow.answer(theirs)
            field = answer.probabilities - reference.probabilities
            weights = answer.weights - reference.weights
            difference = max(float(np.abs(d).max()) for d in (cells, field, weights))
            assert difference <= TOLERANCE, f"{card.name}: {difference:.1e}"


def test_served_probabilities_are_tensorflows_on_synthetic_smears(
    inference_service: InferenceService,
) -> None:
    files = synth_images(6)
    check_probabilities(inference_service, files)
    check_cell_probabilities(inference_service, files)


@pytest.mark.data
def test_served_probabilities_are_tensorflows_on_the_data_set(
    inference_service: InferenceService,
) -> None:
    root = data_root()
    assert root is not None
    files = smear_images(root, 24)
    check_probabilities(inference_service, files)
    check_cell_probabilities(inference_service, files)


def test_a_cells_outputs_never_depend_on_the_crops_beside_it(
    inference_service: InferenceService,
) -> None:
    # A case runs each photograph's crops alone, evaluation many photographs' at once.
    crops = np.concatenate(field_crops(synth_images(4)))
    for card in inference_service.models():
        if card.unit == "cell":
            served = cell_model(inference_service, card.name)
            together = served.run(crops)
            for start, end in ((0, 1), (1, 4), (2, len(crops))):
                alone = served.run(crops[start:end])
                assert np.array_equal(alone.logits, together.logits[start:end])
                assert np.array_equal(alone.scores, together.scores[start:end])
                assert np.array_equal(alone.features, together.features[start:end])


def test_the_served_network_answers_threads_at_once(inference_service: InferenceService) -> None:
    card = field_cards(inference_service)[0]
    loaded = inference_service.field_model(card.name).model
    x = model_inputs(synth_images(4), card)
    alone = loaded.logits(x)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: loaded.logits(x), range(8)))
    assert all(np.array_equal(alone, t) for t in together)


def test_a_conversion_is_kept_for_the_next_process(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITERT_CACHE_DIR", str(tmp_path))
    first = load_model(models_dir, "lenet", served=True)
    assert len(list(tmp_path.glob("*.tflite"))) == 1

    def refuse(*_args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_concrete_functions", refuse)
    again = load_model(models_dir, "lenet", served=True)
    x = model_inputs(synth_images(2), first.card)
    assert np.array_equal(first.logits(x), again.logits(x))


def test_an_image_process_opens_the_kept_network_and_gets_its_outputs(
    inference_service: InferenceService,
) -> None:
    for card in inference_service.models():
        network = inference_service.served(card.name).model.network
        assert network is not None, card.name
        assert network.file is not None, card.name
        x = np.random.default_rng(1).random((3, card.input_size, card.input_size, 3), np.float32)
        ran = run_kept(network.file, x)
        assert ran is not None, card.name
        for got, served in zip(ran.outputs, network.run(x), strict=True):
            assert np.array_equal(got, served), card.name


def test_a_network_that_cannot_be_kept_is_served_and_says_so(
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("LITERT_CACHE_DIR", str(blocked))
    loaded = load_model(models_dir, "lenet", served=True)
    assert loaded.network is not None
    assert loaded.network.file is None  # the image processes leave it to this process
    assert "could not be kept" in caplog.text
    x = model_inputs(synth_images(2), loaded.card)
    difference = np.abs(loaded.predict(x) - tensorflow_probabilities(loaded, x)).max()
    assert difference <= TOLERANCE


def test_a_kept_network_whose_file_changed_or_went_is_not_opened(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITERT_CACHE_DIR", str(tmp_path))
    network = load_model(models_dir, "lenet", served=True).network
    assert network is not None
    assert network.file is not None
    file = network.file
    flat = file.path.read_bytes()
    assert kept(file.path, flat, network.views) == file
    assert kept(tmp_path / "never-written.tflite", flat, network.views) is None
    changed = tmp_path / "changed.tflite"
    changed.write_bytes(flat[:-1] + bytes([flat[-1] ^ 1]))  # another process wrote other bytes
    assert kept(changed, flat, network.views) == dataclasses.replace(file, path=changed)
    assert opened(dataclasses.replace(file, path=changed)) is None
    assert run_kept(dataclasses.replace(file, path=tmp_path / "gone.tflite"), np.zeros(1)) is None
    assert run_kept(None, np.zeros(1)) is None
