"""The image processes: how many, results in order from runs of photographs, what a
photograph read there sends back, and refusals that survive the trip."""

from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from app.core import image_processes
from app.core.errors import CaptureError, ImageDecodeError, NoCellsError
from app.core.model_card import ModelCard
from app.core.reading import (
    arrived,
    decode_cells,
    decode_field,
    read_cells,
    read_cells_of,
    read_field,
    read_fields,
)
from tests.support.images import ImageFactory
from tests.support.models import ROOT


def jpeg(seed: int, size: tuple[int, int] = (224, 224)) -> bytes:
    buf = io.BytesIO()
    ImageFactory.smear(size, seed=seed).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_the_count_is_the_setting_or_the_cores(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "3")
    assert image_processes.processes() == 3
    monkeypatch.setenv("IMAGE_PROCESSES", "0")
    assert image_processes.processes() == 0
    assert image_processes.pool() is None
    assert image_processes.start(powers, [1, -2], 2) is None
    monkeypatch.delenv("IMAGE_PROCESSES")
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5})
    assert image_processes.processes() == image_processes.MAX_PROCESSES
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0})
    assert image_processes.processes() == 0  # one core: the threads alone


def powers(run: list[int], exponent: int) -> list[int]:
    """A run's results, an item each, as ``read_fields`` gives them."""
    return [n**exponent for n in run]


@pytest.mark.parametrize("count", [1, 2, 7, 33, 50])
def test_results_come_back_in_order_whatever_the_runs(monkeypatch, count: int) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    pending = image_processes.start(powers, list(range(count)), 2)
    assert pending is not None
    assert len(pending) == count
    assert [pending.result(i) for i in range(count)] == [n * n for n in range(count)]
    # Taken out of order too: each run is waited for once.
    assert [pending.result(i) for i in reversed(range(count))] == [
        n * n for n in reversed(range(count))
    ]


@pytest.mark.parametrize("count", [1, 3, 8, 50, 200])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_runs_cover_every_item_once_and_shrink_towards_the_end(count: int, workers: int) -> None:
    bounds = image_processes.run_bounds(count, workers)
    assert [i for begin, end in bounds for i in range(begin, end)] == list(range(count))
    sizes = [end - begin for begin, end in bounds]
    assert all(1 <= s <= image_processes.MAX_RUN for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1  # the model's work after the last run is one photograph's


def test_a_field_read_there_sends_no_pixels_and_arrives_as_decoded_here() -> None:
    data = jpeg(3)
    scale = ModelCard.load(ROOT / "models" / "lenet.json").scale  # the served scale check
    assert scale is not None
    here = decode_field(data, 128, scale)
    sent = read_field(data, 128, scale, guarded=True, pictures=True)
    assert not isinstance(sent, Exception)
    assert sent.image is None
    assert sent.field_image is None
    assert sent.x.dtype == np.uint8  # a quarter of the floats' bytes
    assert len(pickle.dumps(sent)) < len(pickle.dumps(here.x))
    back = arrived(pickle.loads(pickle.dumps(sent)))
    assert np.array_equal(back.x, here.x)  # the very floats, bit for bit
    assert back.x.dtype == np.float32
    assert back.scale == here.scale
    assert back.photograph_size == here.photograph_size
    assert sent.made is not None
    assert sent.made.stats is not None
    assert sent.made.extra is not None
    assert sent.made.extra.thumbnail[:2] == b"\xff\xd8"


def test_the_cells_read_there_arrive_with_the_very_crops() -> None:
    data = jpeg(5, (320, 320))
    here = decode_cells(data)
    sent = read_cells(data, guarded=False, pictures=False)
    assert not isinstance(sent, Exception)
    assert sent.image is None
    assert len(sent.cells.crops) == 0  # made again from the pictures and the stain's table
    assert sent.made is not None
    assert sent.made.stats is None  # no guard asked for
    assert sent.made.extra is None
    back = arrived(pickle.loads(pickle.dumps(sent)))
    assert np.array_equal(back.cells.crops, here.cells.crops)
    assert back.cells.crops.dtype == here.cells.crops.dtype
    assert back.width == here.width
    assert [c.box for c in back.cells.used] == [c.box for c in here.cells.used]


def test_refusals_are_returned_not_raised_and_survive_the_trip() -> None:
    assert isinstance(read_field(b"not an image", 128, None, True, True), Exception)
    refused = read_cells(b"\xff\xd8\xff broken", True, True)
    assert isinstance(refused, ImageDecodeError)
    for error in (
        CaptureError("the cells are too small", "zoom in", code="scale_out_of_range"),
        CaptureError("the field is blurred", "focus"),
        NoCellsError("none found"),
        ImageDecodeError("truncated"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert back.message == error.message
        assert back.code == error.code
        assert back.status == error.status


def test_a_run_is_read_as_each_of_its_photographs_alone_with_refusals_in_place() -> None:
    scale = ModelCard.load(ROOT / "models" / "lenet.json").scale
    run = [jpeg(1), b"not an image", jpeg(2, (320, 320))]
    fields = read_fields(run, 128, scale, True, True)
    alone = [read_field(d, 128, scale, True, True) for d in run]
    assert type(fields[1]) is type(alone[1])
    for got, one in [(fields[0], alone[0]), (fields[2], alone[2])]:
        assert not isinstance(got, Exception)
        assert not isinstance(one, Exception)
        assert np.array_equal(got.x, one.x)
        assert got.made is not None
        assert one.made is not None
        assert np.array_equal(got.made.stats, one.made.stats)  # type: ignore[arg-type]
        assert got.made.extra == one.made.extra
    cells = read_cells_of(run, True, True)
    assert type(cells[1]) is type(alone[1])
    for got_c, one_c in [
        (cells[0], read_cells(run[0], True, True)),
        (cells[2], read_cells(run[2], True, True)),
    ]:
        assert not isinstance(got_c, Exception)
        assert not isinstance(one_c, Exception)
        assert np.array_equal(got_c.cells.pictures, one_c.cells.pictures)
        assert got_c.made is not None
        assert one_c.made is not None
        assert np.array_equal(got_c.made.stats, one_c.made.stats)  # type: ignore[arg-type]
        assert got_c.made.extra == one_c.made.extra


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_processes_end_when_their_serving_process_is_killed() -> None:
    script = (
        "from app.core import image_processes as p; import time; p.warm(); "
        "print(*p.pids(), flush=True); time.sleep(60)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "IMAGE_PROCESSES": "2"},
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            pids = [int(p) for p in server.stdout.readline().split()]
            assert len(pids) == 2
            assert all(running(pid) for pid in pids)
        finally:
            server.kill()  # no shutdown: as the out-of-memory killer ends a worker
    deadline = time.monotonic() + 10 * image_processes.ORPHAN_CHECK_S
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(pid) for pid in pids)


def test_where_no_process_can_start_the_threads_read_and_it_is_said_once(
    monkeypatch, caplog
) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")

    def refused(*_args: object, **_kwargs: object) -> None:
        raise OSError("no room for a process")

    monkeypatch.setattr(image_processes, "_pool", None)
    monkeypatch.setattr(image_processes, "_unavailable", None)
    monkeypatch.setattr(ProcessPoolExecutor, "submit", refused)
    assert image_processes.start(powers, [1, -2], 2) is None
    assert image_processes.warm() == 0
    assert image_processes.pool() is None  # not tried again in this process
    said = [r.getMessage() for r in caplog.records if "cannot be started" in r.getMessage()]
    assert said == [
        "image processes cannot be started (no room for a process); the image threads read cases"
    ]


def waits(run: list[float]) -> list[float]:
    """A run that takes its items' seconds."""
    for seconds in run:
        time.sleep(seconds)
    return run


def test_a_result_left_half_written_by_a_dead_process_ends_the_pool_not_the_case(
    monkeypatch,
) -> None:
    monkeypatch.setenv("IMAGE_PROCESSES", "2")
    monkeypatch.setattr(image_processes, "WATCH_S", 0.1)
    monkeypatch.setattr(image_processes, "GRACE_S", 0.5)
    image_processes.discard()
    assert image_processes.warm() == 2
    executor = image_processes.pool()
    assert executor is not None
    pending = image_processes.start(waits, [30.0, 30.0])
    assert pending is not None
    manager: threading.Thread | None = executor._executor_manager_thread  # type: ignore[assignment]
    assert manager is not None
    # What a process killed while sending its results leaves: a message's length and a part
    # of it. The pool's manager thread waits for the rest, which never comes.
    writer = executor._result_queue._writer  # type: ignore[attr-defined]
    os.write(writer.fileno(), struct.pack("!i", 1_000_000) + b"\x80\x05partial")
    for pid in image_processes.pids():
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(BrokenProcessPool):
        pending.result(0)
    assert time.monotonic() - started < 10  # not the runs' 30 s, nor forever
    manager.join(timeout=10)
    assert not manager.is_alive()  # the pool's own thread ended too
    image_processes.discard()
    again = image_processes.start(powers, [2, 3], 2)
    assert again is not None
    assert [again.result(0), again.result(1)] == [4, 9]
