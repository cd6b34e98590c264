"""The process's image threads: results in order, errors raised, a fresh pool after a fork,
and started work going on beside the caller."""

from __future__ import annotations

import os
import threading
from typing import TypeVar

import pytest

from app.core import parallel

T = TypeVar("T")


def every(pending: parallel.Pending[T]) -> list[T]:
    return [pending.result(i) for i in range(len(pending))]


def test_results_come_back_in_order_from_several_threads(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "2")
    seen: set[str] = set()

    def square(n: int) -> int:
        seen.add(threading.current_thread().name)
        return n * n

    assert parallel.parallel_map(square, range(40)) == [n * n for n in range(40)]
    assert all(name.startswith("images") for name in seen)


def test_an_error_in_one_item_is_raised(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "2")

    def fail_on_three(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        return n

    with pytest.raises(ValueError, match="three"):
        parallel.parallel_map(fail_on_three, range(6))


def test_one_thread_runs_on_the_caller(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "1")
    names = parallel.parallel_map(lambda _: threading.current_thread().name, range(3))
    assert names == [threading.current_thread().name] * 3


def test_a_forked_process_makes_its_own_pool(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "2")
    parallel.parallel_map(abs, [-1, -2])
    before = parallel._executor()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a child after fork
    assert parallel._executor() is not before
    assert parallel.parallel_map(abs, [-1, -2]) == [1, 2]


def test_started_work_runs_beside_the_caller_and_keeps_order(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "1")
    monkeypatch.setattr(parallel, "_pools", {})  # one thread, as in a busy server's worker
    release = threading.Event()

    def wait_then_square(n: int) -> int:
        assert release.wait(5), "the caller was blocked while the work was pending"
        return n * n

    pending = parallel.start(wait_then_square, range(5))
    release.set()  # the caller gets here only because start() returned at once
    assert every(pending) == [0, 1, 4, 9, 16]


def test_started_work_takes_zipped_arguments_and_raises_errors(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "2")
    assert every(parallel.start(divmod, [7, 9], [2, 4])) == [(3, 1), (2, 1)]
    with pytest.raises(ZeroDivisionError):
        every(parallel.start(divmod, [1, 2], [1, 0]))
    with pytest.raises(ValueError, match="shorter"):
        parallel.start(divmod, [1, 2], [1])  # unequal lengths are a caller's mistake


def test_one_started_item_is_worked_on_by_the_caller(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_THREADS", "2")
    pending = parallel.start(lambda _: threading.current_thread().name, [0])
    assert every(pending) == [threading.current_thread().name]
    with pytest.raises(ZeroDivisionError):
        every(parallel.start(divmod, [1], [0]))
