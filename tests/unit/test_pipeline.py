"""Many photographs through a model as a pipeline: outcomes in order, refusals in place, the
model given each photograph while later ones are still decoded, and the follow-up work (the
guard's statistics, the caller's pictures) on the image threads."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.core import parallel
from app.core.errors import ImageDecodeError
from app.core.guards.image_stats import field_statistics
from app.core.pipeline import Measured, analyse
from app.core.prediction import Prediction
from tests.support.images import ImageFactory

WAIT = 10.0


class FakeRun:
    """Records what the model was given; its 'predictions' are the decoded items."""

    def __init__(self, log: list[list[Any]], threads: set[str]) -> None:
        self.added: list[Any] = []
        self.log = log
        self.threads = threads
        log.append(self.added)

    def add(self, decoded: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.added.append(decoded)

    def finish(self, measured: Callable[[], Sequence[Measured[Any]]]) -> list[Prediction]:
        assert len(measured()) == len(self.added)
        return [(d, m.extra) for d, m in zip(self.added, measured(), strict=True)]  # type: ignore[misc]


def decode(data: bytes) -> str | ImageDecodeError:
    return ImageDecodeError("bad") if data == b"bad" else data.decode()


@pytest.fixture(autouse=True)
def two_threads(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "2")


def test_outcomes_come_in_order_with_refusals_in_place_and_batches_kept() -> None:
    log: list[list[Any]] = []
    followed: list[tuple[int, str]] = []
    lock = threading.Lock()

    def follow(index: int, decoded: str) -> str:
        with lock:
            followed.append((index, decoded))
        return decoded.upper()

    items = [b"a", b"bad", b"c", b"d", b"e"]
    out: list[Any] = list(analyse(items, decode, lambda: FakeRun(log, set()), 2, None, follow))
    assert isinstance(out[1][0], ImageDecodeError)
    assert out[1][1] is None
    assert [o for i, o in enumerate(out) if i != 1] == [
        (("a", "A"), "A"),
        (("c", "C"), "C"),
        (("d", "D"), "D"),
        (("e", "E"), "E"),
    ]
    # Batches of two positions: the refused item's batch holds one photograph.
    assert log == [["a"], ["c", "d"], ["e"]]
    assert sorted(followed) == [(0, "a"), (2, "c"), (3, "d"), (4, "e")]


def test_the_model_gets_the_first_photograph_while_later_ones_are_decoded() -> None:
    first_given = threading.Event()
    log: list[list[Any]] = []

    class SignallingRun(FakeRun):
        def add(self, decoded: Any) -> None:
            super().add(decoded)
            first_given.set()

    def slow_decode(data: bytes) -> str:
        if data == b"last":
            assert first_given.wait(WAIT), "the model waited for every photograph's decoding"
        return data.decode()

    items = [b"first", b"x", b"y", b"last"]
    out: list[Any] = list(analyse(items, slow_decode, lambda: SignallingRun(log, set()), 64, None))
    assert [o[0] for o in out] == [(d, None) for d in ("first", "x", "y", "last")]


def test_a_batchs_results_are_given_before_later_photographs_are_decoded() -> None:
    given = threading.Event()

    def slow_decode(data: bytes) -> str:
        if data == b"last":
            assert given.wait(WAIT), "the first batch's results waited for every photograph"
        return data.decode()

    out: Iterator[Any] = analyse(
        [b"a", b"b", b"last"], slow_decode, lambda: FakeRun([], set()), 2, None
    )
    assert [o for o, _ in itertools.islice(out, 2)] == [("a", None), ("b", None)]
    given.set()
    assert [o for o, _ in out] == [("last", None)]


def test_follow_up_work_runs_on_the_image_threads_and_the_model_on_the_caller() -> None:
    names: set[str] = set()

    def follow(index: int, decoded: str) -> str:
        return threading.current_thread().name

    out = list(analyse([b"a", b"b", b"c"], decode, lambda: FakeRun([], names), 64, None, follow))
    assert all(extra is not None and extra.startswith("images") for _, extra in out)
    assert names == {threading.current_thread().name}  # the model runs on the caller


def test_a_single_photographs_follow_up_runs_beside_its_model_call() -> None:
    # Each side waits for the other to have begun: done one after the other, neither would.
    following, modelling = threading.Event(), threading.Event()

    class WaitingRun(FakeRun):
        def add(self, decoded: Any) -> None:
            modelling.set()
            assert following.wait(WAIT), "the follow-up waited for the model call"
            super().add(decoded)

    def follow(index: int, decoded: str) -> str:
        following.set()
        assert modelling.wait(WAIT), "the model call waited for the follow-up"
        return threading.current_thread().name

    out: list[Any] = list(analyse([b"a"], decode, lambda: WaitingRun([], set()), 64, None, follow))
    ((outcome, thread),) = out
    assert outcome == ("a", thread)
    assert thread.startswith("beside")


@pytest.mark.parametrize("items", [[b"a"], [b"a", b"b", b"c"]])
def test_a_runs_last_model_work_goes_on_while_the_follow_up_work_does(
    items: list[bytes],
) -> None:
    # A cell model runs its last cells in ``finish``: the follow-ups are not awaited first.
    following, modelling = threading.Event(), threading.Event()

    class LastWorkRun(FakeRun):
        def finish(self, measured: Callable[[], Sequence[Measured[Any]]]) -> list[Prediction]:
            modelling.set()
            assert following.wait(WAIT), "the follow-up work was awaited before the model's"
            return super().finish(measured)

    def follow(index: int, decoded: str) -> str:
        if index == len(items) - 1:
            following.set()
            assert modelling.wait(WAIT), "the model's last work waited for the follow-up"
        return decoded

    out: list[Any] = list(analyse(items, decode, lambda: LastWorkRun([], set()), 64, None, follow))
    assert [extra for _, extra in out] == [i.decode() for i in items]


def test_a_single_photograph_never_waits_behind_a_cases_queued_work(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "1")
    monkeypatch.setattr(parallel, "_pools", {})
    release = threading.Event()
    case = parallel.start(lambda _: release.wait(WAIT), range(3))  # the image thread is busy
    try:
        ((_, extra),) = analyse(
            [b"a"], decode, lambda: FakeRun([], set()), 64, None, lambda i, d: d.upper()
        )
        assert extra == "A"
    finally:
        release.set()
    assert case.result(2)


def test_the_guard_statistics_are_the_images_own() -> None:
    images = [ImageFactory.smear((224, 224), seed=s) for s in range(3)]

    class StatsRun(FakeRun):
        def finish(self, measured: Callable[[], Sequence[Measured[Any]]]) -> list[Prediction]:
            return [m.stats for m in measured()]  # type: ignore[misc]

    def by_index(data: bytes) -> Image.Image:
        return images[int(data)]

    out = analyse([b"0", b"1", b"2"], by_index, lambda: StatsRun([], set()), 64, lambda i: i)
    for image, (stats, _) in zip(images, out, strict=True):
        np.testing.assert_array_equal(stats, field_statistics(image))


def test_an_error_in_follow_up_work_is_raised(monkeypatch) -> None:
    def fail(index: int, decoded: str) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(parallel, "_pools", {})
    with pytest.raises(OSError, match="disk full"):
        list(analyse([b"a", b"b"], decode, lambda: FakeRun([], set()), 64, None, fail))
