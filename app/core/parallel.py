"""One process-wide pool of threads for per-image work (decoding, statistics, crops).

NumPy, Pillow and scikit-image release the GIL in their heavy loops, so a case's
photographs are worked on by as many threads as the machine has cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0


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


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _lock:
        # A pool made before a fork (gunicorn's preloading) has no threads in the child.
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="images")
            _pool_pid = os.getpid()
        return _pool
