"""Processes of their own for a case's photographs, so their image work shares no GIL.

A case's image threads hand Python's GIL to each other 30-60 times a field and keep 1.7 of 2
cores busy (docs/decisions.md). A pool of processes reads whole photographs instead
(``app.core.reading.read_fields`` and ``read_cells_of``, a run of a few at a time:
decoding, the scale check and model input or the cells, the guard's statistics, the
pictures) and sends back what the model and the record need, never the photograph's pixels.
The model's network runs there too, on the run's photographs once they are read, from the
file the serving process converted it to (``app.core.lite_network``; where a process cannot
open it, the serving process runs it). ``IMAGE_PROCESSES`` sets the count (default: the
cores this process may use, at most 4; 0: none, the image threads do it all). A single
photograph stays on the threads: a round trip to a process would cost it more than it saves.

The processes come from a fork server that has imported only the image modules and LiteRT
(no TensorFlow), started once per process that analyses cases; a pool made before a fork
(gunicorn's preloading) is not used by the child, which makes its own.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeoutError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from app.core.parallel import Pending

log = logging.getLogger(__name__)

R = TypeVar("R")

PROCESSES = "IMAGE_PROCESSES"
MAX_PROCESSES = 4
# A case's photographs go to the processes in runs, each about the photographs left over
# this many runs a process, at most MAX_RUN (the model waits for a run's first): the runs
# shrink towards the end, so the model's last work after the processes finish is small.
RUNS_PER_PROCESS = 2
MAX_RUN = 8
# Below the serving process's priority: its requests (a single photograph's model call, a
# case's writing) go first, the image processes take the cycles left.
NICENESS = 10
# How often a process looks whether the serving process that started it is gone.
ORPHAN_CHECK_S = 1.0
# A case waiting on a run looks this often whether the pool's processes still run; when one
# has died and the pool has not said so within GRACE_S, the run is given up (the pool's
# manager thread waits forever on a result the dead process left half-written).
WATCH_S = 1.0
GRACE_S = 3.0
# What the fork server imports once, so each process starts with it.
PRELOAD = ["app.core.reading", "app.core.allocator"]

_lock = threading.Lock()
_pool: tuple[int, ProcessPoolExecutor] | None = None
# The process (pid) where processes could not be started at all: it stops trying.
_unavailable: int | None = None


def processes() -> int:
    """Image processes per serving process: ``IMAGE_PROCESSES``, or the cores this process
    may use (at most MAX_PROCESSES); 0 or 1 core: none."""
    configured = os.environ.get(PROCESSES, "").strip()
    if configured:
        return max(0, int(configured))
    cores = len(os.sched_getaffinity(0))
    return min(MAX_PROCESSES, cores) if cores > 1 else 0


def pool() -> ProcessPoolExecutor | None:
    """This process's pool of image processes, started on first use; None when there are
    none."""
    global _pool
    count = processes()
    if count < 1 or _unavailable == os.getpid():
        return None
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            executor = ProcessPoolExecutor(
                count, mp_context=context, initializer=_started, initargs=(os.getpid(),)
            )
            _pool = (os.getpid(), executor)
        return _pool[1]


def warm() -> int:
    """Start the pool's processes now (a served worker, before it takes requests), so the
    first case does not wait for them; how many there are."""
    executor = pool()
    if executor is None:
        return 0
    count = processes()
    try:
        for future in [executor.submit(_ready) for _ in range(count)]:
            future.result()
    except (BrokenProcessPool, OSError) as exc:
        _cannot_start(exc)
        return 0
    return count


def pids() -> list[int]:
    """The ids of this process's image processes now (none before its pool started)."""
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            return []
        # The executor's own table of its processes: it has no public one.
        return list(_pool[1]._processes or {})


def start(fn: Callable[..., list[R]], items: Sequence[Any], *args: Any) -> Pending[R] | None:
    """``fn(run, *args)`` on the image processes for runs of a few items, giving a result an
    item, taken as each run is ready; None when there are no processes or their pool broke
    (a process killed), so the caller reads the photographs on its threads instead. Items go
    in runs, so a process always has the next at hand while this process is busy with the
    model, and a run's photographs share the work that keeps (a network's weights)."""
    executor = pool()
    if executor is None:
        return None
    runs = [list(items[begin:end]) for begin, end in run_bounds(len(items), processes())]
    try:
        futures = [executor.submit(fn, run, *args) for run in runs]
        return Runs(futures, [len(run) for run in runs], executor)
    except BrokenProcessPool:
        discard()
        return None
    except OSError as exc:
        _cannot_start(exc)
        return None


def run_bounds(count: int, workers: int) -> list[tuple[int, int]]:
    """(begin, end) of each run of ``count`` items for ``workers`` processes: each run the
    items left over RUNS_PER_PROCESS runs a process, between 1 and MAX_RUN."""
    bounds = []
    begin = 0
    while begin < count:
        left = count - begin
        size = max(1, min(MAX_RUN, -(-left // (RUNS_PER_PROCESS * max(1, workers)))))
        bounds.append((begin, begin + size))
        begin += size
    return bounds


class Runs(Pending[R]):
    """Results of items sent to the processes in runs, one future a run, taken item by item;
    BrokenProcessPool when a process of ``executor`` dies (``_awaited``)."""

    def __init__(
        self, futures: list[Future[list[R]]], sizes: list[int], executor: ProcessPoolExecutor
    ) -> None:
        super().__init__([])
        self._runs = futures
        self._executor = executor
        # Each item's run and its place in the run.
        self._where = [(run, i) for run, size in enumerate(sizes) for i in range(size)]

    def __len__(self) -> int:
        return len(self._where)

    def result(self, index: int) -> R:
        run, i = self._where[index]
        return _awaited(self._runs[run], self._executor)[i]


def _awaited(future: Future[R], executor: ProcessPoolExecutor) -> R:
    """The future's result. The pool fails its futures when a process dies, unless its
    manager thread is stuck reading a result the dead process left half-written: then, once
    a process has been gone GRACE_S, the pool is ended here and BrokenProcessPool raised."""
    gone_since: float | None = None
    while True:
        try:
            return future.result(timeout=WATCH_S)
        except FuturesTimeoutError:
            pass
        if all(_running(pid) for pid in list(executor._processes or {})):
            gone_since = None
            continue
        now = time.monotonic()
        gone_since = now if gone_since is None else gone_since
        if now - gone_since >= GRACE_S and not future.done():
            _end_stuck(executor)
            raise BrokenProcessPool("an image process died before sending its results")


def _end_stuck(executor: ProcessPoolExecutor) -> None:
    """End the pool's processes, then close this process's end of their results' pipe: its
    manager thread then reads the end of the pipe instead of waiting, and fails the pool's
    futures itself (CPython's ``concurrent.futures.process``)."""
    processes = list((executor._processes or {}).values())
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=GRACE_S)
    results = executor._result_queue
    if results is not None:  # None once the pool is shut down
        results._writer.close()  # type: ignore[attr-defined]  # no public handle
    log.warning("an image process died before sending its results; its pool is ended")


def discard() -> None:
    """Drop this process's pool, broken by a process that died: the next case starts a new
    one."""
    log.warning("an image process stopped; a new pool starts with the next case")
    _drop()


def _drop() -> None:
    global _pool
    with _lock:
        dropped, _pool = _pool, None
    if dropped is not None and dropped[0] == os.getpid():
        # A broken pool has failed every call it held already; nothing is cancelled here.
        dropped[1].shutdown(wait=False)


def _cannot_start(exc: BaseException) -> None:
    """No processes can be started here (no fork server, no room for a process): this
    process reads its cases on its image threads from now on, and says so once."""
    global _unavailable
    _unavailable = os.getpid()
    log.warning("image processes cannot be started (%s); the image threads read cases", exc)
    _drop()


def _started(server: int) -> None:
    from app.core.allocator import keep_working_memory

    keep_working_memory()  # as the serving process: a field's memory kept for the next
    os.nice(NICENESS)
    watch = threading.Thread(target=_end_with_server, args=(server,), daemon=True)
    watch.start()


def _end_with_server(server: int) -> None:
    """End this process once the serving process that started it is gone without shutting
    the pool down (killed): nothing will send it work again, and the fork server ends with
    the last of its processes."""
    while _running(server):
        time.sleep(ORPHAN_CHECK_S)
    os._exit(0)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a killed process waiting for its parent to reap it does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc: the signal's answer stands
        return True


def _ready() -> int:
    return os.getpid()
