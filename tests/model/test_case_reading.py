"""A case's photographs read in the image processes get the very answers the image threads
give, a killed process costs a case nothing, and a single photograph stays on the threads."""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import signal
from typing import Any

import pytest
from PIL import Image

from app.core import image_processes
from app.core.cells.serving import ServedCellModel
from app.core.errors import AnalysisRefusedError
from app.core.reading import arrived, pictures_of, read_cells
from app.core.service import READ_BATCH, InferenceService
from tests.support.images import ImageFactory, smear_images
from tests.support.models import data_root

MODELS = ["lenet", "sequential", "vggnet", "cell_lenet", "cellnet"]


def jpeg(seed: int, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    ImageFactory.smear(size, seed=seed).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def photographs() -> list[bytes]:
    """Synthetic smears of a few sizes, refusals of several kinds, and data-set photographs
    when the data set is there."""
    made = [jpeg(seed, size) for seed, size in enumerate([(224, 224), (320, 240), (256, 256)])]
    # Red cells and a cell-free field: the scale cannot be measured, or no leukocyte.
    blank = ImageFactory.encode(Image.new("RGB", (224, 224), (236, 228, 232)))
    refused = [b"not an image", b"\xff\xd8\xff\xe0 truncated", blank]
    root = data_root()
    real = smear_images(root, 8) if root is not None and root.is_dir() else []
    return made[:2] + refused[:1] + made[2:] + refused[1:] + real


def analysed(service: InferenceService, items: list[bytes], model: str) -> list[Any]:
    def follow(_index: int, decoded: Any) -> Any:
        return pictures_of(decoded)

    return list(service.analyse_each(items, model, follow, pixels=False, pictures=True))


def same_answers(threads: list[Any], processes: list[Any]) -> None:
    assert len(threads) == len(processes)
    for (a, kept_a), (b, kept_b) in zip(threads, processes, strict=True):
        if isinstance(a, AnalysisRefusedError):
            assert isinstance(b, AnalysisRefusedError)
            assert type(b) is type(a)
            assert (b.code, b.message) == (a.code, a.message)
            continue
        assert b.probabilities == a.probabilities
        assert b.class_id == a.class_id
        assert b.ood == a.ood
        assert b.scale == a.scale
        assert b.photograph_size == a.photograph_size
        assert b.image_format == a.image_format
        if b.model_input is not None:  # else its process ran the network, and kept it
            assert (b.model_input == a.model_input).all()
        assert b.cells == a.cells
        assert kept_b == kept_a  # the thumbnail and cell crops, byte for byte


@pytest.mark.parametrize("model", MODELS)
def test_a_case_read_in_the_processes_gets_the_threads_answers(
    inference_service: InferenceService, monkeypatch, model: str
) -> None:
    items = photographs()
    monkeypatch.setenv("IMAGE_PROCESSES", "0")
    threads = analysed(inference_service, items, model)
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    processes = analysed(inference_service, items, model)
    same_answers(threads, processes)
    answered = [p for p, _ in processes if not isinstance(p, Exception)]
    assert answered
    # Read in a process: no pixels came back, so nothing was read on the threads.
    assert all(p.image is None and p.field_image is None for p in answered)
    with pytest.raises(ValueError, match="image process"):
        answered[0].pixels()
    # The network ran there too: its input was neither sent back nor made again here.
    assert all(p.model_input is None for p in answered)
    with pytest.raises(ValueError, match="image process ran the network"):
        answered[0].network_input()


def served_calls(service: InferenceService, model: str, monkeypatch) -> list[int]:
    """Counts each call of the model's network in this (the serving) process."""
    network = service.served(model).model.network
    assert network is not None
    calls: list[int] = []
    run = network.run

    def counted(x: Any) -> Any:
        calls.append(len(x))
        return run(x)

    monkeypatch.setattr(network, "run", counted)
    return calls


@pytest.mark.parametrize("model", MODELS)
def test_the_image_processes_run_the_network_on_what_they_read(
    inference_service: InferenceService, monkeypatch, model: str
) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    calls = served_calls(inference_service, model, monkeypatch)
    answers = analysed(inference_service, photographs()[:4], model)
    assert [p for p, _ in answers if not isinstance(p, Exception)]
    assert calls == []


@pytest.mark.parametrize("model", ["lenet", "cell_lenet"])
def test_a_network_file_changed_since_loading_leaves_the_network_to_the_serving_process(
    inference_service: InferenceService, monkeypatch, tmp_path, model: str
) -> None:
    items = photographs()
    monkeypatch.setenv("IMAGE_PROCESSES", "0")
    threads = analysed(inference_service, items, model)
    network = inference_service.served(model).model.network
    assert network is not None
    assert network.file is not None
    changed = tmp_path / "changed.tflite"
    changed.write_bytes(network.file.path.read_bytes()[::-1])
    monkeypatch.setattr(network, "file", dataclasses.replace(network.file, path=changed))
    calls = served_calls(inference_service, model, monkeypatch)
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    processes = analysed(inference_service, items, model)
    same_answers(threads, processes)
    assert calls  # the processes could not open it: this process ran it
    answered = [p for p, _ in processes if not isinstance(p, Exception)]
    assert all(p.model_input is not None for p in answered)


def test_a_killed_image_process_costs_the_case_nothing(
    inference_service: InferenceService, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    items = photographs()[:2] * 3
    assert image_processes.warm() == 2
    pool = image_processes.pool()
    assert pool is not None
    for pid in list(pool._processes):  # as the kernel's out-of-memory killer would
        os.kill(pid, signal.SIGKILL)
    answers = analysed(inference_service, items, "lenet")
    monkeypatch.setenv("IMAGE_PROCESSES", "0")
    same_answers(analysed(inference_service, items, "lenet"), answers)
    # The case was read on the threads; the next one gets a new pool.
    assert all(p.image is not None for p, _ in answers)
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    assert image_processes.pool() is not pool
    assert all(p.image is None for p, _ in analysed(inference_service, items, "lenet"))


def test_a_pool_that_breaks_part_way_leaves_the_rest_of_the_case_to_the_threads(
    inference_service: InferenceService, monkeypatch
) -> None:
    def follow(index: int, decoded: Any) -> Any:
        return index, pictures_of(decoded)

    items = photographs()[:2] * 30
    monkeypatch.setenv("IMAGE_PROCESSES", "0")
    threads = list(inference_service.analyse_each(items, "lenet", follow, pixels=False))
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    assert image_processes.warm() == 2
    pool = image_processes.pool()
    assert pool is not None
    answers = inference_service.analyse_each(items, "lenet", follow, pixels=False, pictures=True)
    first = list(itertools.islice(answers, READ_BATCH))  # read in the processes
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    rest = list(answers)
    # Each photograph once, in order, with its own index: none lost, none read twice.
    same_answers(threads, first + rest)
    assert all(not isinstance(p, Exception) and p.image is None for p, _ in first)
    # The threads read those left.
    assert any(not isinstance(p, Exception) and p.image is not None for p, _ in rest)
    assert image_processes.pool() is not pool


def test_several_photographs_keep_their_pixels_unless_told_not_to(
    inference_service: InferenceService, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    items = photographs()[:2]
    for p in inference_service.classify_many(items, "lenet"):
        assert not isinstance(p, Exception)
        image, field_image = p.pixels()  # read on the threads: explainable
        assert image.size == p.photograph_size
        inference_service.explain(p)


def test_a_single_photograph_is_read_on_the_threads(
    inference_service: InferenceService, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    [(prediction, pictures)] = analysed(inference_service, [jpeg(1, (224, 224))], "cell_lenet")
    assert prediction.image is not None  # its pixels are here, for its explanation
    assert pictures.thumbnail


def test_a_photograph_read_in_a_process_is_answered_as_its_cells_come_through(
    inference_service: InferenceService,
) -> None:
    # Its guard statistics came with it, so its answer is not left to the request's end.
    served = inference_service.served("cell_lenet")
    assert isinstance(served, ServedCellModel)
    run = served.new_run()
    sent = [read_cells(jpeg(seed, (224, 224)), True, False) for seed in range(3)]
    for decoded in sent:
        assert not isinstance(decoded, AnalysisRefusedError)
        run.add(arrived(decoded))

    def follow_ups() -> list[Any]:
        raise AssertionError("the answers waited for the follow-up work")

    answers = run.finish(follow_ups)
    alone = [inference_service.classify(jpeg(seed, (224, 224)), "cell_lenet") for seed in range(3)]
    assert [a.probabilities for a in answers] == [a.probabilities for a in alone]
    assert [a.ood for a in answers] == [a.ood for a in alone]
