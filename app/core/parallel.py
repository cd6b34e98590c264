"""Process-wide pools of threads for per-image work (decoding, statistics, crops).

OpenCV, Pillow and most of NumPy release the GIL in their heavy loops, so a case's
photographs are worked on by as many threads as the machine has cores (``parallel_map``);
NumPy's LAPACK calls keep it, so the per-field work makes none. Their Python glue still
holds it, so two threads run a field's steps well short of twice as fast as one.
TensorFlow releases it for a whole model pass, so work that ``start`` hands to the threads
before a pass goes on while the pass runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

IMAGES = "images"
# A single request's follow-up work gets threads of its own: on the image threads it could
# wait behind a case's queued photographs.
BESIDE = "beside"

_lock = threading.Lock()
_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}


def workers() -> int:
    """Threads per process: ``IMAGE_THREADS``, or the cores this process may use (at most 4)."""
    configured = os.environ.get("IMAGE_THREADS", "").strip()
    if configured:
        return max(1, int(configured))
    return max(1, min(4, len(os.sched_getaffinity(0))))


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]``, spread over the pool; exceptions propagate."""
    batch = list(items)
    if len(batch) < 2 or workers() < 2:
        return [fn(item) for item in batch]
    return list(_executor().map(fn, batch))


class Pending(Generic[R]):
    """Results being worked out on the pool, taken one at a time as each is ready."""

    def __init__(self, futures: list[Future[R]]) -> None:
        self._futures = futures

    def __len__(self) -> int:
        return len(self._futures)

    def result(self, index: int) -> R:
        """Item ``index``'s result, as soon as it is ready (the others may still be running);
        its exception is raised here."""
        return self._futures[index].result()


def start(fn: Callable[..., R], *iterables: Iterable[Any]) -> Pending[R]:
    """Start ``fn`` over the items of ``iterables`` (zipped, as ``map`` does) on the pool
    and return at once, so the caller can work meanwhile (a model pass); even with one
    image thread the work runs beside the caller. A single call is made now, by the
    caller: on the pool it could queue behind a case's work."""
    calls = list(zip(*iterables, strict=True))
    if len(calls) < 2:
        return Pending([_done(fn, args) for args in calls])
    pool = _executor()
    return Pending([pool.submit(fn, *args) for args in calls])


def later(fn: Callable[..., R], *args: Any) -> Pending[R]:
    """``fn(*args)`` on the image threads while the caller goes on, even as a single call:
    work that follows other work a request has already queued there."""
    return Pending([_executor().submit(fn, *args)])


def beside(fn: Callable[..., R], *args: Any) -> Pending[R]:
    """``fn(*args)`` on a thread while the caller goes on (a single photograph's statistics
    while its model call runs), on threads no case's queued work ever fills."""
    return Pending([_executor(BESIDE).submit(fn, *args)])


def _done(fn: Callable[..., R], args: tuple[Any, ...]) -> Future[R]:
    future: Future[R] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # raised by result(), as from the pool
        future.set_exception(exc)
    return future


def _executor(name: str = IMAGES) -> ThreadPoolExecutor:
    with _lock:
        pid, pool = _pools.get(name, (0, None))
        # A pool made before a fork (gunicorn's preloading) has no threads in the child.
        if pool is None or pid != os.getpid():
            pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix=name)
            _pools[name] = (os.getpid(), pool)
        return pool
