"""Every speed target of issue 25 at a glance: measured beside its target, in one run.

    python -m benchmarks.speed [--models-dir DIR] [--data-dir DIR] [--fields 50]
                               [--rounds 3] [--requests 300] [--http-rounds 3] [--no-http]
                               [--out benchmarks/SPEED.md]

On the data set's 224 px JPEGs (synthetic smears without ALL_DATA_DIR):

1. a field's own work on one thread, step by step (storing the photograph as a new file,
   decoding, the scale check and model input, the guard's statistics, the thumbnail, the
   cell crops), and the cell path's (storing, decoding, reading the cells, the cell network
   batched, pooling, the guard's statistics, the pictures), and how much faster 2 image
   threads do the field work than 1;
2. each served network alone on a case's inputs in one call (the bare batched model);
3. a case of ``--fields`` photographs posted to ``POST /api/v1/cases`` through Flask's
   test client, per model, with its overlap efficiency: (bare batched model time + the
   one-thread field work / cores) / the case's time, each round's parts measured just
   before its case and the median of the rounds' ratios taken (also with the storing left
   out of the field work), and what a case adds to peak memory;
4. single predictions through gunicorn as ``gunicorn.conf.py`` configures it, the client
   on the same machine: LeNet's p50 at concurrency 1 and requests a second at 16, in
   --http-rounds rounds (one round moves by a tenth from the next on a 2-core VM).

Timings are the best (steps) or the median (cases, requests) of the rounds; the load
average before and after is written with them.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tests.support.images import smear_images, synth_images
from tests.support.models import ROOT, data_root, served_models_dir

FIELD_WORK_MS = 5.0
CELL_PATH_MS = 25.0
CASE_LENET_S = 0.6
CASE_ANY_S = 1.0
EFFICIENCY = 0.8
CASE_MEMORY_MB = 300.0
HTTP_P50_MS = 10.0
HTTP_RATE = 200.0

T = TypeVar("T")


@dataclass
class Row:
    what: str
    measured: str
    target: str = ""
    met: bool | None = None

    def cells(self) -> str:
        met = "" if self.met is None else ("yes" if self.met else "**no**")
        return f"| {self.what} | {self.measured} | {self.target} | {met} |"


def best_ms(
    work: Callable[[], object], n: int, rounds: int, clock: Callable[[], float] = time.thread_time
) -> float:
    """The fastest of ``rounds`` runs of ``work`` (after one untimed), in ms per field: by
    default the calling thread's CPU time, which other work on the machine inflates less
    than the wall clock (an image step runs on the calling thread)."""
    work()
    best = float("inf")
    for _ in range(rounds):
        start = clock()
        work()
        best = min(best, clock() - start)
    return best * 1000 / n


def cores() -> int:
    return len(os.sched_getaffinity(0))


# A fixed workload that runs none of the app's code: 2 million additions in Python and a sort
# of a million floats in NumPy, about 80 ms on this kind of machine.
REFERENCE_ADDITIONS = 2_000_000
REFERENCE_VALUES = 1_000_000


def reference_ms(rounds: int = 3) -> float:
    """The fastest of ``rounds`` runs of the fixed workload, in ms of this thread's CPU: how
    fast the machine was at the time, for comparing runs made hours apart on a VM whose speed
    drifts (the same code's figures move with it)."""
    values = np.random.default_rng(0).random(REFERENCE_VALUES)

    def work() -> None:
        total = 0
        for i in range(REFERENCE_ADDITIONS):
            total += i
        np.sort(values)

    return best_ms(work, 1, rounds)


class Rounds:
    """Step timings over rounds: each step's time summed over a round's photographs, and its
    fastest round, in ms per field, of the calling thread's CPU time (other work on the
    machine inflates it less than the wall clock) or of ``clock``. Each round works on freshly
    decoded photographs, one after another, as requests do: what a field's steps make for one
    another (its 128 px look, its pixels) is made once a round, and the memory one photograph
    frees is what the next one gets."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.best: dict[str, float] = {}
        self._round: dict[str, float] = {}

    def step(
        self, name: str, work: Callable[[], T], clock: Callable[[], float] = time.thread_time
    ) -> T:
        start = clock()
        result = work()
        self._round[name] = self._round.get(name, 0.0) + clock() - start
        return result

    def end_round(self, counted: bool) -> None:
        if counted:
            for name, seconds in self._round.items():
                self.best[name] = min(self.best.get(name, float("inf")), seconds)
        self._round = {}

    def ms(self) -> dict[str, float]:
        return {name: seconds * 1000 / self.n for name, seconds in self.best.items()}


# Each photograph a case or a step stores is new to the store: a lab's are, and a file the
# store holds already is only touched.
_sent = itertools.count()


def new_to_the_store(data: bytes) -> bytes:
    """``data`` with a few bytes after the image's end, which decoding ignores: a new file."""
    return data + b"\0sent %d" % next(_sent)


# The step that stores a photograph: the image store's put of a new file, synced.
STORE = "store the photograph (a new file, synced)"
# Photographs a store holds before it is measured: enough that every folder it keeps them in
# is there, as in a lab's store after its first weeks, not a new store's folder-making.
IN_SERVICE = 2000


def in_service(store: Any) -> Any:
    """``store`` holding ``IN_SERVICE`` small photographs, so a put only makes its file."""
    for i in range(IN_SERVICE):
        store.put(b"held %d" % i)
    return store


OneRound = Callable[[list[bytes], Any, Rounds, Any], None]


def steps(one_round: OneRound, files: list[bytes], service: Any, rounds: int) -> dict[str, float]:
    """Each step's ms a field over ``rounds`` rounds of ``one_round`` (``field_round`` or
    ``cell_round``), best of the rounds."""
    from app.records.image_store import ImageStore

    timing = Rounds(len(files))
    with tempfile.TemporaryDirectory() as scratch:
        store = in_service(ImageStore(scratch))
        for round_ in range(rounds + 1):
            one_round(files, service, timing, store)
            timing.end_round(counted=round_ > 0)  # the first round warms the code, untimed
    return timing.ms()


def field_round(files: list[bytes], service: Any, timing: Rounds, store: Any) -> None:
    """One round of a field model's work besides the network, step by step, into ``timing``:
    each photograph stored in ``store`` as a case stores it, then read."""
    from app.core.explanation.gallery import cell_crops, thumbnail_jpeg
    from app.core.guards.image_stats import field_statistics
    from app.core.preprocessing import load_image, prepare, sniff_format

    card = service.field_model("lenet").card

    def one(data: bytes) -> None:
        upload = new_to_the_store(data)
        timing.step(STORE, lambda: store.put(upload))
        image = timing.step("decode", lambda: (sniff_format(data), load_image(data)))[1]
        seen = timing.step(
            "scale check and model input", lambda: prepare(image, card.input_size, card.scale)
        )
        timing.step("guard statistics", lambda: field_statistics(seen.field))
        timing.step("thumbnail", lambda: thumbnail_jpeg(image))
        timing.step("cell crops", lambda: cell_crops(seen.field))

    for data in files:
        one(data)


# The cell path's step that is the network: the bare model, not the field work.
CELL_NETWORK = "cell network (batched)"


def cell_round(files: list[bytes], service: Any, timing: Rounds, store: Any) -> None:
    """One round of the cell path, step by step, into ``timing``: each photograph stored in
    ``store`` as a case stores it, then read."""
    from app.core.cells.crops import read_photograph
    from app.core.explanation.gallery import cell_model_pictures
    from app.core.guards.image_stats import field_statistics
    from app.core.preprocessing import load_image, sniff_format

    model = service.served("cell_lenet").model

    def read(data: bytes) -> tuple[Any, Any]:
        upload = new_to_the_store(data)
        timing.step(STORE, lambda: store.put(upload))
        image = timing.step("decode", lambda: (sniff_format(data), load_image(data)))[1]
        return image, timing.step(
            "read the cells (scale, find, stain, crops)", lambda: read_photograph(image)
        )

    def follow(image: Any, cells: Any, own: Any) -> None:
        if len(own):
            timing.step("pooling", lambda: model.answer(own))
        timing.step("guard statistics", lambda: field_statistics(image))
        timing.step("pictures (thumbnail, cell crops)", lambda: cell_model_pictures(image, cells))

    photographs = [read(data) for data in files]
    crops = np.concatenate([cells.crops for _, cells in photographs])
    # LiteRT runs the network with the GIL let go: the wall clock.
    outputs = timing.step(CELL_NETWORK, lambda: model.run(crops), time.perf_counter)
    bounds = np.cumsum([0, *(len(cells.crops) for _, cells in photographs)])
    for (image, cells), a, b in zip(photographs, bounds[:-1], bounds[1:], strict=True):
        follow(image, cells, outputs.part(int(a), int(b)))


def bare_call(service: Any, files: list[bytes], name: str) -> Callable[[], object]:
    """The served network alone on the case's inputs, in one call."""
    from app.core.cells.crops import read_photograph
    from app.core.preprocessing import load_image, prepare

    served = service.served(name)
    images = [load_image(d) for d in files]
    if served.card.unit == "cell":
        crops = np.concatenate([read_photograph(i).crops for i in images])
        return lambda: served.model.run(crops)
    card = served.card
    x = np.stack([prepare(i, card.input_size, card.scale).x for i in images])
    forward = served.guard.forward if served.guard is not None else served.model.logits
    return lambda: forward(x)


def bare_ms(service: Any, files: list[bytes], name: str, rounds: int) -> float:
    """The served network alone on the case's inputs in one call, ms per field."""
    call = bare_call(service, files, name)
    return best_ms(call, len(files), rounds, time.perf_counter)


def own_work_ms(files: list[bytes], service: Any, name: str, store: Any) -> dict[str, float]:
    """One round of the one-thread work besides the network a case of model ``name`` needs
    for each photograph (storing it, and the field work or the cell path without its
    network), ms a field by step."""
    timing = Rounds(len(files))
    one_round = cell_round if service.served(name).card.unit == "cell" else field_round
    one_round(files, service, timing, store)
    timing.end_round(counted=True)
    return {step: ms for step, ms in timing.ms().items() if step != CELL_NETWORK}


def peak_rss_mb(pid: int | str = "self") -> float:
    return _status_mb(pid, "VmHWM:")


def _status_mb(pid: int | str, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """A process's proportional share of memory: pages it shares counted once overall."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_cpu_s(pid: int) -> float:
    """A process's CPU time so far, all its threads (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | str = "self") -> float:
    return _status_mb(pid, "VmRSS:")


def reset_peak(pid: int | str = "self") -> bool:
    """Start the peak-memory count afresh (Linux: 5 > /proc/<pid>/clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class ThreadCost:
    """LeNet's whole field work on 1 image thread and on 2: how many times faster 2 are (the
    wall clock), and each's CPU and voluntary context switches a field (medians of the
    rounds). A switch on 2 threads is mostly a thread asleep waiting for the GIL."""

    speedup: float
    cpu_ms: dict[int, float]
    switches: dict[int, float]


def thread_cost(files: list[bytes], service: Any, rounds: int) -> ThreadCost:
    """``ThreadCost`` of decoding, the scale check and model input, the guard's statistics
    and the pictures, the photographs spread over a pool of 1 thread, then of 2."""
    from concurrent.futures import ThreadPoolExecutor

    from app.core.explanation.gallery import field_pictures
    from app.core.guards.image_stats import field_statistics
    from app.core.preprocessing import load_image, prepare

    card = service.field_model("lenet").card

    def work(data: bytes) -> None:
        image = load_image(data)
        field = prepare(image, card.input_size, card.scale).field
        field_statistics(field)
        field_pictures(image, field)

    seconds: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    switches: dict[int, list[float]] = {1: [], 2: []}
    with ThreadPoolExecutor(1) as one, ThreadPoolExecutor(2) as two:
        for round_ in range(rounds + 1):
            for threads, pool in ((1, one), (2, two)):
                before = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                list(pool.map(work, files))
                elapsed = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_SELF)
                if round_:  # the first round warms both pools, untimed
                    seconds[threads].append(elapsed)
                    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                    cpu[threads].append(used * 1000 / len(files))
                    switches[threads].append((after.ru_nvcsw - before.ru_nvcsw) / len(files))
    return ThreadCost(
        speedup=statistics.median(seconds[1]) / statistics.median(seconds[2]),
        cpu_ms={n: statistics.median(v) for n, v in cpu.items()},
        switches={n: statistics.median(v) for n, v in switches.items()},
    )


@dataclass(frozen=True)
class CaseRun:
    """A model's cases: the median seconds of a case request, the MB the first whole case
    added to peak memory, each round's overlap efficiency, and each round's with the
    photographs' storing left out of the field work but not of the case (as the runs before
    the field work stored them counted it)."""

    seconds: float
    added_mb: float
    efficiencies: list[float]
    without_store: list[float]

    @property
    def efficiency(self) -> float:
        return statistics.median(self.efficiencies)


def case_runs(
    service: Any, files: list[bytes], names: list[str], rounds: int
) -> dict[str, CaseRun]:
    """Per model, its cases. Each round measures its own one-thread field work and bare
    network just before its case, so a machine whose speed drifts moves the ratio's two
    sides together."""
    from app.records.image_store import ImageStore
    from benchmarks.case_bench import bench_app
    from tests.support.accounts import admin_client
    from tests.support.server import multipart

    out = {}
    with tempfile.TemporaryDirectory() as scratch:
        app = bench_app(service, Path(scratch))
        client = admin_client(app)
        logging.disable(logging.INFO)  # the app's log line per request
        # The steps' store beside the cases': on the same disk, and both in service.
        store = in_service(ImageStore(Path(scratch) / "steps"))
        in_service(ImageStore(app.config["IMAGE_STORE"]))

        def post(model: str, batch: list[bytes]) -> float:
            parts = [
                ("images", (f"field-{i}.jpg", new_to_the_store(d))) for i, d in enumerate(batch)
            ]
            body, ctype = multipart({"reference": "BENCH", "model": model}, parts)
            start = time.perf_counter()
            response = client.post("/api/v1/cases", data=body, content_type=ctype)
            seconds = time.perf_counter() - start
            if response.status_code != 201:
                raise SystemExit(
                    f"case failed: {response.status_code} {response.get_data()[:300]!r}"
                )
            return seconds

        for name in names:
            post(name, files[:4])  # the batch shapes traced, the pools started
            # The serving process and its image processes: a case's memory is theirs together.
            pids: list[int | str] = ["self", *image_process_pids()]
            before = sum(rss_mb(pid) for pid in pids)
            for pid in pids:
                reset_peak(pid)
            seconds = [post(name, files)]  # the first whole case: its allocations counted
            added = sum(peak_rss_mb(pid) for pid in pids) - before
            bare = bare_call(service, files, name)
            efficiencies: list[float] = []
            without_store: list[float] = []
            for _ in range(rounds):
                own = own_work_ms(files, service, name, store)
                start = time.perf_counter()
                bare()
                network = time.perf_counter() - start
                seconds.append(post(name, files))
                work = sum(own.values())
                for ratios, ms in ((efficiencies, work), (without_store, work - own[STORE])):
                    ratios.append((network + ms * len(files) / 1000 / cores()) / seconds[-1])
            out[name] = CaseRun(statistics.median(seconds), added, efficiencies, without_store)
            print(
                f"[case {name}] {out[name].seconds:.2f} s, +{added:.0f} MB peak, "
                f"efficiency {out[name].efficiency:.2f} "
                f"({statistics.median(without_store):.2f} with the storing left out)",
                flush=True,
            )
        logging.disable(logging.NOTSET)
    return out


def image_process_pids() -> list[int]:
    """The serving process's image processes, where this tree has them."""
    try:
        from app.core.image_processes import pids
    except ImportError:  # an older tree, measured with this benchmark for comparison
        return []
    return pids()


def image_process_memory() -> tuple[int, float, float]:
    """How many image processes there are, their resident memory together, and their
    proportional share (what they share with each other counted once), in MB."""
    pids = image_process_pids()
    return len(pids), sum(rss_mb(p) for p in pids), sum(pss_mb(p) for p in pids)


def http_run(files: list[bytes], requests: int, rounds: int = 3) -> dict[str, Any]:
    """LeNet's p50 at concurrency 1 and its rate at 16 through gunicorn, with its setup: the
    median of ``rounds`` rounds of both, and each round's figures (a single round moves by
    a tenth on this kind of machine)."""
    from tests.support.server import Client, GunicornServer

    # Production, as deployed: no first-admin account that must change its password.
    server = GunicornServer(env={"APP_ENV": "production"}).start()
    try:
        server.wait_ready()
        workers = int(os.environ.get("WEB_CONCURRENCY", str(min(cores(), 4))))
        pids = server.wait_all_workers_ready(workers)
        token = server.token

        def load(concurrency: int, n: int) -> tuple[list[float], float, int]:
            counter = iter(range(n))
            lock = threading.Lock()
            latencies: list[float] = []
            errors = [0]

            def worker() -> None:
                client = Client(server.port, token=token)
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        break
                    start = time.perf_counter()
                    status, _ = client.predict(files[i % len(files)], "lenet")
                    elapsed = time.perf_counter() - start
                    with lock:
                        if status == 200:
                            latencies.append(elapsed)
                        else:
                            errors[0] += 1
                client.close()

            threads = [threading.Thread(target=worker) for _ in range(concurrency)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return latencies, time.perf_counter() - start, errors[0]

        load(4, 40)  # warm: every worker and thread has answered
        runs = []
        for _ in range(rounds):
            cpu_before = sum(process_cpu_s(pid) for pid in pids)
            one, _, errors_one = load(1, requests // 2)
            cpu_one = sum(process_cpu_s(pid) for pid in pids) - cpu_before
            if not one:
                raise SystemExit(f"no prediction answered 200:\n{server.log()[-2000:]}")
            many, wall, errors_many = load(16, requests)
            runs.append(
                {
                    "p50_ms": statistics.median(one) * 1000,
                    "cpu_ms": cpu_one / (requests // 2) * 1000,
                    "p95_ms": float(np.percentile(one, 95)) * 1000,
                    "rate": len(many) / wall,
                    "p50_16_ms": statistics.median(many) * 1000,
                    "errors": errors_one + errors_many,
                }
            )
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        return {
            **median,
            "errors": sum(r["errors"] for r in runs),
            "workers": workers,
            "runs": runs,
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=served_models_dir())
    parser.add_argument("--data-dir", type=Path, default=data_root())
    parser.add_argument("--fields", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--no-http", action="store_true", help="skip the gunicorn part")
    parser.add_argument("--http-rounds", type=int, default=3, help="rounds of the HTTP loads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "SPEED.md")
    args = parser.parse_args()
    started = time.monotonic()
    load_before = os.getloadavg()
    reference_before = reference_ms()
    import tensorflow as tf

    from app.core.collector import set_aside_loaded
    from app.core.model_files import model_names
    from app.core.service import InferenceService

    # One thread for the step timings, as the targets ask; cases use the image threads.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    files = smear_images(args.data_dir, args.fields) if args.data_dir else synth_images(args.fields)
    names = model_names(args.models_dir)
    service = InferenceService(args.models_dir).load()
    set_aside_loaded()  # as a served worker does once its models are warm
    fields = steps(field_round, files, service, args.rounds)
    print(f"[field work] {fields}", flush=True)
    cells = steps(cell_round, files, service, args.rounds) if "cell_lenet" in names else {}
    print(f"[cell path] {cells}", flush=True)
    threads = thread_cost(files, service, args.rounds)
    print(f"[2 image threads against 1] {threads}", flush=True)
    bare = {name: bare_ms(service, files, name, args.rounds) for name in names}
    print(f"[bare models, ms a field] {bare}", flush=True)
    cases = case_runs(service, files, names, args.rounds)
    processes = image_process_memory()
    print(f"[image processes: count, resident MB, proportional MB] {processes}", flush=True)
    http = {} if args.no_http else http_run(files, args.requests, args.http_rounds)
    print(f"[http] {http}", flush=True)
    machine = Machine(load_before, reference_before, started)
    text = _markdown(args, fields, cells, threads, bare, cases, processes, http, machine)
    args.out.write_text(text)
    print(text)
    return 0


@dataclass(frozen=True)
class Machine:
    """The machine's state when a run began: its load, its speed, the start time."""

    load_before: tuple[float, float, float]
    reference_before: float
    started: float


def _allocator_kept() -> str:
    try:
        from app.core.allocator import keep_working_memory
    except ImportError:  # an older tree, measured with this benchmark for comparison
        return "no (this tree has none)"
    return "yes" if keep_working_memory() else "no (not glibc, or set by the environment)"


def _markdown(
    args: argparse.Namespace,
    fields: dict[str, float],
    cells: dict[str, float],
    threads: ThreadCost,
    bare: dict[str, float],
    cases: dict[str, CaseRun],
    processes: tuple[int, float, float],
    http: dict[str, Any],
    machine: Machine,
) -> str:
    n = args.fields
    field_total = sum(fields.values())
    cell_work = sum(v for k, v in cells.items() if k != "cell network (batched)")
    rows = [Row(f"field work: {k}", f"{v:.2f} ms") for k, v in fields.items()]
    rows.append(
        Row(
            "**a field's work besides the model** (one thread)",
            f"**{field_total:.2f} ms**",
            f"<= {FIELD_WORK_MS:g} ms",
            field_total <= FIELD_WORK_MS,
        )
    )
    rows.append(
        Row(
            "of it, the image work (the field work without storing the photograph)",
            f"{field_total - fields.get(STORE, 0.0):.2f} ms",
        )
    )
    rows.append(
        Row(
            "the field work on 2 image threads against 1 (wall clock)",
            f"{threads.speedup:.2f}x faster",
        )
    )
    rows.append(
        Row(
            "the field work's CPU a field, 1 image thread / 2 (context switches a field)",
            f"{threads.cpu_ms[1]:.2f} ms ({threads.switches[1]:.1f}) / "
            f"{threads.cpu_ms[2]:.2f} ms ({threads.switches[2]:.1f})",
        )
    )
    if cells:
        rows += [Row(f"cell path: {k}", f"{v:.2f} ms") for k, v in cells.items()]
        total = sum(cells.values())
        rows.append(
            Row(
                "**the cell path with its classifier** (one thread)",
                f"**{total:.2f} ms**",
                f"<= {CELL_PATH_MS:g} ms",
                total <= CELL_PATH_MS,
            )
        )
    for name, run in cases.items():
        seconds, added, efficiency = run.seconds, run.added_mb, run.efficiency
        own = cell_work if name in ("cell_lenet", "cellnet") else field_total
        # The ratio from the steps' best rounds and the cases' median, measured apart: shown too.
        apart = (bare[name] * n / 1000 + own * n / 1000 / cores()) / seconds
        limit = CASE_LENET_S if name == "lenet" else CASE_ANY_S
        rows += [
            Row(f"bare batched model, {name}", f"{bare[name]:.2f} ms a field"),
            Row(f"{n}-field case, {name}", f"{seconds:.2f} s", f"<= {limit:g} s", seconds <= limit),
            Row(
                f"overlap efficiency, {name} (median of the rounds)",
                f"{efficiency:.3f} (rounds {min(run.efficiencies):.2f}-"
                f"{max(run.efficiencies):.2f}; {apart:.2f} from the steps' best rounds; "
                f"{statistics.median(run.without_store):.3f} with the storing left out)",
                f">= {EFFICIENCY:g}",
                efficiency >= EFFICIENCY,
            ),
            Row(
                f"peak memory added by a case, {name}",
                f"{added:.0f} MB",
                f"<= {CASE_MEMORY_MB:g} MB",
                added <= CASE_MEMORY_MB,
            ),
        ]
    count, resident, share = processes
    rows.append(
        Row(
            "the image processes that read a case's photographs, started with the worker",
            f"{count}: {resident:.0f} MB resident together, {share:.0f} MB proportional "
            "(what they share counted once)"
            if count
            else "none (IMAGE_PROCESSES=0, one core, or a tree without them)",
        )
    )
    if http:
        p50s = ", ".join(f"{r['p50_ms']:.1f}" for r in http["runs"])
        rates = ", ".join(f"{r['rate']:.0f}" for r in http["runs"])
        cpus = ", ".join(f"{r['cpu_ms']:.2f}" for r in http["runs"])
        rows += [
            Row(
                "LeNet through gunicorn, p50 at concurrency 1 (median of the rounds)",
                f"{http['p50_ms']:.1f} ms (p95 {http['p95_ms']:.1f}; rounds {p50s})",
                f"<= {HTTP_P50_MS:g} ms",
                http["p50_ms"] <= HTTP_P50_MS,
            ),
            Row(
                "gunicorn workers' CPU per LeNet request at concurrency 1 (median)",
                f"{http['cpu_ms']:.2f} ms (rounds {cpus})",
            ),
            Row(
                "LeNet through gunicorn, requests a second at concurrency 16 (median)",
                f"{http['rate']:.0f} req/s (p50 {http['p50_16_ms']:.1f} ms; rounds {rates}), "
                f"{http['errors']:.0f} errors",
                f">= {HTTP_RATE:g} req/s",
                http["rate"] >= HTTP_RATE and http["errors"] == 0,
            ),
        ]
    kept = _allocator_kept()
    if args.no_http:
        http_options = "--no-http"
        http_method = "HTTP: not measured (`--no-http`)."
    else:
        http_options = f"--requests {args.requests} --http-rounds {args.http_rounds}"
        http_method = (
            "HTTP: gunicorn as gunicorn.conf.py configures it, every model loaded, the Python "
            f"client on the same machine ({http.get('workers', 0):.0f} workers); "
            f"{args.http_rounds} rounds of {args.requests // 2} requests at concurrency 1 and "
            f"{args.requests} at 16, the median of the rounds judged against the target."
        )
    load_after = os.getloadavg()
    reference_after = reference_ms()
    minutes = (time.monotonic() - machine.started) / 60
    source = "the data set's 224 px JPEGs" if args.data_dir else "synthetic 224 px JPEGs"
    return "\n".join(
        [
            "# Speed targets (issue 25)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m benchmarks.speed "
            f"--fields {n} --rounds {args.rounds} {http_options}` on "
            f"{platform.processor() or platform.machine()}, {cores()} cores, {source}, in "
            f"{minutes:.1f} minutes. Load average (1/5/15 min) before: "
            f"{' / '.join(f'{v:.2f}' for v in machine.load_before)}, after: "
            f"{' / '.join(f'{v:.2f}' for v in load_after)}; other work on the machine slows "
            "every figure. The machine's own speed at the time: a fixed workload that runs none "
            f"of the app's code (`reference_ms`) took {machine.reference_before:.0f} ms of CPU "
            f"before and {reference_after:.0f} ms after (lower is faster); compare two runs' "
            "figures only where these agree.",
            "",
            "Steps: one thread, the photographs one after another as requests come, each "
            "step's ms per field of the thread's CPU time summed over a round, best of the "
            "rounds (the wall clock for the cell network over the round's cells, which LiteRT "
            "runs with Python's lock let go). Bare "
            "model: the served network (LiteRT; a cell model a crop at a time) on "
            "the case's inputs in one call, wall clock. Cases: the median of the rounds "
            "through Flask's test client (multipart parsing, the image processes or threads, "
            "the model pass, SQLite, the image store; each case's photographs new to the "
            "store, by a few bytes after the image's end, a store that holds "
            f"{IN_SERVICE:,} photographs already, so its folders are there as in a store in "
            "use, the steps' store too; the first whole case and --rounds "
            "more; what the process loaded set aside from the garbage collector, as a served "
            "worker's is), efficiency "
            f"= (bare model time + one-thread field work / {cores()} cores) / case time, each "
            "round's with the field work (the cell path's for a cell model, without its "
            "network; both with the photograph's storing, which the case does too) and the "
            "bare model measured just before its case, the median of the "
            "rounds judged against the target; peak "
            "memory added by the first whole case over the memory before it, the process's "
            f"and its image processes' together. {http_method} glibc's allocator keeps a "
            f"field's working memory for the next (`app.core.allocator`): {kept}.",
            "",
            "| what | measured | target | met |",
            "|---|---|---|---|",
            *(r.cells() for r in rows),
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
