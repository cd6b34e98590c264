"""Many photographs through one model as a pipeline, so the cores are never idle.

The image threads decode and prepare every photograph (queued first, in order), or the image
processes read each whole (``analyse_read``: its statistics, pictures and, where they can,
the network's outputs made there too, ``app.core.image_processes``). The caller takes them
in order as each is ready, queues its follow-up work on the image threads (the guard's
statistics, and whatever the caller asks for: pictures, storing the photograph) and hands it
to the model (``Run.add``); so the model runs while later photographs are still being
decoded, and the statistics and pictures are made while it runs. ``Run.finish`` then scores
each batch of up to ``batch`` photographs at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from PIL import Image

from app.core.errors import AnalysisRefusedError
from app.core.guards.image_stats import field_statistics
from app.core.parallel import Pending, beside, later, start
from app.core.prediction import Prediction

D = TypeVar("D")
D_contra = TypeVar("D_contra", contravariant=True)
T = TypeVar("T")

Outcome = Prediction | AnalysisRefusedError


@dataclass(frozen=True)
class Measured(Generic[T]):
    """A photograph's follow-up work: its guard statistics (None without a guard), how long
    they took, and what the caller's own follow-up gave (None without one)."""

    stats: np.ndarray | None
    stats_ms: float
    extra: T | None


class Run(Protocol[D_contra]):
    """A model's work on one batch of decoded photographs, given them one at a time."""

    def add(self, decoded: D_contra) -> None:
        """Take the next photograph (the model may run on it now, or on several later)."""

    def finish(self, measured: Callable[[], Sequence[Measured[Any]]]) -> list[Prediction]:
        """The predictions of the photographs added, in order, from their follow-up work;
        ``measured()`` waits for that work, so a run's last model work goes first."""


def analyse(
    items: Sequence[bytes],
    decode: Callable[[bytes], D | AnalysisRefusedError],
    new_run: Callable[[], Run[D]],
    batch: int,
    statistics_of: Callable[[D], Image.Image] | None,
    follow: Callable[[int, D], T] | None = None,
) -> Iterator[tuple[Outcome, T | None]]:
    """Each item's prediction or refusal, with what ``follow(index, decoded)`` gave for it,
    in order, each batch's as soon as it is done.

    ``statistics_of`` picks the image the guard's statistics are taken of (None: the model
    has no guard). One item is decoded by the caller, and its follow-up work runs beside
    its model call on threads of their own (``parallel.beside``), not behind a case's."""
    hand = beside if len(items) < 2 else later

    def follow_up(i: int, decoded: D) -> Pending[Measured[T]]:
        return hand(_follow_up, statistics_of, follow, i, decoded)

    return _batches(start(decode, items), _as_is, new_run, batch, follow_up)


class Read(Protocol):
    """A photograph read in an image process: its statistics and pictures made there."""

    @property
    def made(self) -> Measured[Any] | None: ...


R = TypeVar("R", bound=Read)
Reading = Pending[R | AnalysisRefusedError]


def analyse_read(
    reading: Reading[R],
    arrive: Callable[[R], R],
    new_run: Callable[[], Run[R]],
    batch: int,
    follow: Callable[[int, R], T] | None = None,
) -> Iterator[tuple[Outcome, T | None]]:
    """``analyse`` for photographs read in image processes (``reading``, one result an
    item, in order): ``arrive`` makes each what the model takes, its statistics (and the
    network's outputs, where its process ran it) come with it, and ``follow`` runs on the
    image threads while the model runs."""

    def follow_up(i: int, decoded: R) -> Pending[Measured[T]]:
        return later(_follow_read, follow, i, decoded)

    return _batches(reading, arrive, new_run, batch, follow_up)


def _batches(
    decoding: Pending[Any],
    arrive: Callable[[Any], D],
    new_run: Callable[[], Run[D]],
    batch: int,
    follow_up: Callable[[int, D], Pending[Measured[T]]],
) -> Iterator[tuple[Outcome, T | None]]:
    """The photographs through the model in batches as each is decoded, refusals in place;
    a batch's results are given as it ends, so the caller records them while later
    photographs are still being read."""
    count = len(decoding)
    for begin in range(0, count, batch):
        end = min(count, begin + batch)
        results: list[tuple[Outcome, T | None] | None] = [None] * (end - begin)
        run = new_run()
        placed: list[int] = []
        following: list[Pending[Measured[T]]] = []
        for i in range(begin, end):
            got = decoding.result(i)
            if isinstance(got, AnalysisRefusedError):
                results[i - begin] = (got, None)
                continue
            decoded = arrive(got)
            following.append(follow_up(i, decoded))
            run.add(decoded)
            placed.append(i)
        measured = FollowUps(following)
        predictions = run.finish(measured)
        for i, prediction, m in zip(placed, predictions, measured(), strict=True):
            results[i - begin] = (prediction, m.extra)
        yield from (r for r in results if r is not None)


def _as_is(decoded: D) -> D:
    return decoded


class FollowUps(Generic[T]):
    """A batch's follow-up work, waited for on the first call."""

    def __init__(self, following: list[Pending[Measured[T]]]) -> None:
        self._following = following
        self._done: list[Measured[T]] | None = None

    def __call__(self) -> list[Measured[T]]:
        if self._done is None:
            self._done = [m.result(0) for m in self._following]
        return self._done


def _follow_up(
    statistics_of: Callable[[D], Image.Image] | None,
    follow: Callable[[int, D], T] | None,
    index: int,
    decoded: D,
) -> Measured[T]:
    stats, stats_ms = timed_statistics(None if statistics_of is None else statistics_of(decoded))
    return Measured(stats, stats_ms, None if follow is None else follow(index, decoded))


def timed_statistics(image: Image.Image | None) -> tuple[np.ndarray | None, float]:
    """The guard's statistics of ``image`` and the ms they took; (None, 0) without one."""
    if image is None:
        return None, 0.0
    begin = time.perf_counter()
    stats = field_statistics(image)
    return stats, (time.perf_counter() - begin) * 1000


def _follow_read(follow: Callable[[int, R], T] | None, index: int, decoded: R) -> Measured[T]:
    made = decoded.made
    stats, stats_ms = (None, 0.0) if made is None else (made.stats, made.stats_ms)
    return Measured(stats, stats_ms, None if follow is None else follow(index, decoded))
