"""The process's image threads: results in order, errors raised, a fresh pool after a fork."""

from __future__ import annotations

import threading

import pytest

from app.core import parallel


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
    monkeypatch.setattr(parallel.os, "getpid", lambda: -1)  # as in a child after fork
    assert parallel._executor() is not before
    assert parallel.parallel_map(abs, [-1, -2]) == [1, 2]
