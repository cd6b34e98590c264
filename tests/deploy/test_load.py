"""Load and fault tests against a real gunicorn (2 workers) on a loopback port.

Requests from 16 clients mixing valid images, bad inputs and all models, with one worker
SIGKILLed halfway (2,000 at full size, ``make soak``; a share of them, SOAK_SCALE, in
``make test``); then a client that uploads byte by byte. Run with ``pytest -m slow``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from app.core.model_files import model_names
from tests.support.images import ImageFactory, smear_images, synth_images
from tests.support.models import served_models_dir
from tests.support.server import Client, GunicornServer, multipart, rss_bytes
from tests.support.soak import scaled

pytestmark = pytest.mark.slow

N_REQUESTS = scaled(2000, least=200)
CONCURRENCY = 16
KILL_AFTER = N_REQUESTS // 2
N_IMAGES = 6
WORKERS = 2
RSS_GROWTH_LIMIT = 0.15


@pytest.fixture(scope="module")
def server():
    models_dir = served_models_dir()
    if not model_names(models_dir):
        pytest.skip(f"no trained models in {models_dir} (set MODELS_DIR)")
    env = {"APP_ENV": "production", "WEB_CONCURRENCY": str(WORKERS), "GUNICORN_THREADS": "4"}
    srv = GunicornServer(env=env).start()
    try:
        srv.wait_ready(timeout=240)
        srv.wait_all_workers_ready(WORKERS, timeout=240)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    data_dir = os.environ.get("ALL_DATA_DIR")
    return smear_images(data_dir, N_IMAGES) if data_dir else synth_images(N_IMAGES)


@dataclass
class Tally:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    wrong_class: list[tuple[tuple[int, str], str, str]] = field(default_factory=list)
    retries_before_kill: int = 0
    retries_after_kill: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    successes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.mark.soak
def test_mixed_load_with_a_worker_killed(server, images):
    models = model_names(served_models_dir())
    client = server.client()
    # What a single, unloaded request answers for each image and model.
    expected = {}
    for i, image in enumerate(images):
        for model in models:
            status, body = client.predict(image, model)
            assert status == 200, body
            expected[i, model] = json.loads(body)["class"]
    client.close()

    bad_inputs = [
        ("empty", b""),
        ("text", b"this is not an image, just some text\n" * 20),
        ("truncated", images[0][: len(images[0]) // 3]),
    ]

    def plan(i: int) -> tuple[str, bytes, str, tuple[int, str] | None]:
        """Request i: (kind, body bytes, model, (image index, model) for valid images)."""
        model = models[(i // 10) % len(models)]
        slot = i % 10
        if slot < 7:
            k = (i // 10 + slot) % len(images)
            return "valid", images[k], model, (k, model)
        kind, data = bad_inputs[slot - 7]
        return kind, data, model, None

    # Warm up and take the reference RSS of each worker.
    warm = server.client()
    for i in range(64):
        kind, data, model, _ = plan(i)
        warm.predict(data, model)
    warm.close()
    workers_before = server.workers()
    assert len(workers_before) == WORKERS
    rss_before = {pid: rss_bytes(pid) for pid in workers_before}

    tally = Tally()
    counter = iter(range(N_REQUESTS))
    done = [0]
    killed: list[int] = []
    kill_time = [float("inf")]
    deadline = time.monotonic() + 150

    def send(c: Client, i: int) -> tuple[int, bytes]:
        kind, data, model, _ = plan(i)
        return c.predict(data, model)

    def run_client() -> None:
        c = server.client(timeout=60)
        while time.monotonic() < deadline:
            with tally.lock:
                i = next(counter, None)
            if i is None:
                break
            try:
                status, body = send(c, i)
            except (OSError, http.client.HTTPException):
                # The killed worker's connections drop; the same request is retried once.
                with tally.lock:
                    if time.monotonic() >= kill_time[0]:
                        tally.retries_after_kill += 1
                    else:
                        tally.retries_before_kill += 1
                try:
                    status, body = send(c, i)
                except (OSError, http.client.HTTPException) as exc:
                    with tally.lock:
                        tally.failed.append((i, repr(exc)))
                    continue
            kind, _, _, key = plan(i)
            with tally.lock:
                tally.statuses[(kind, status)] += 1
                done[0] += 1
                if kind == "valid" and status == 200:
                    assert key is not None  # a valid image's (index, model)
                    tally.successes += 1
                    got = json.loads(body)["class"]
                    if got != expected[key]:
                        tally.wrong_class.append((key, got, expected[key]))
                    if done[0] >= KILL_AFTER and not killed:
                        victim = workers_before[0]
                        kill_time[0] = time.monotonic()
                        os.kill(victim, signal.SIGKILL)
                        killed.append(victim)
        c.close()

    threads = [threading.Thread(target=run_client) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    print(
        f"statuses={dict(tally.statuses)} retries_after_kill={tally.retries_after_kill} "
        f"killed={killed}"
    )
    assert sum(tally.statuses.values()) == N_REQUESTS, "ran out of time before all requests"
    assert not tally.failed, tally.failed[:5]
    assert tally.retries_before_kill == 0
    assert not [k for k in tally.statuses if k[1] >= 500], tally.statuses
    assert not [k for k in tally.statuses if k[0] == "valid" and k[1] != 200], tally.statuses
    assert not [k for k in tally.statuses if k[0] != "valid" and not 400 <= k[1] < 500]
    assert not tally.wrong_class, tally.wrong_class[:5]
    assert killed, "the worker was never killed"

    # The master replaces the killed worker; the new one loads its models and serves.
    survivors = [pid for pid in workers_before if pid not in killed]
    now = server.wait_all_workers_ready(WORKERS, timeout=120)
    assert killed[0] not in now
    assert set(survivors) <= set(now)
    assert len(set(now) - set(workers_before)) == 1
    assert f"(pid:{killed[0]})" in server.log() or str(killed[0]) in server.log()

    # Memory of the worker that served the whole run stayed flat.
    for pid in survivors:
        growth = rss_bytes(pid) / rss_before[pid] - 1.0
        print(f"worker {pid}: RSS {rss_before[pid] >> 20} -> {rss_bytes(pid) >> 20} MB")
        assert growth < RSS_GROWTH_LIMIT, f"worker {pid} RSS grew {growth:.1%}"

    # /metrics adds up every worker, the killed one included (its files stay).
    status, text = server.get("/metrics")
    assert status == 200
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("http_requests_total{")
        and 'route="/api/v1/predict"' in line
        and 'status="200"' in line
    )
    assert counted >= tally.successes + len(images) * len(models)


def test_slow_upload_does_not_block_other_users(server, images):
    small = ImageFactory().make("PNG", size=(48, 48))  # a tiny smear, so it is analysed
    body, ctype = multipart({}, {"image": ("slow.png", small)})
    head = (
        f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Authorization: Bearer {server.token}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    per_byte = 4.0 / len(body)  # the upload trickles in over about 4 s
    finished_sending: list[float] = []
    response: list[bytes] = []
    trickling = threading.Event()

    def slow_client() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(head)
            for byte in body:
                sock.sendall(bytes([byte]))
                trickling.set()
                time.sleep(per_byte)
            finished_sending.append(time.monotonic())
            with sock.makefile("rb") as reply:
                response.append(reply.readline())

    slow = threading.Thread(target=slow_client)
    slow.start()
    assert trickling.wait(10), "the slow upload never started"
    timings: list[float] = []
    with server.client(timeout=10) as client:
        while slow.is_alive() and not finished_sending and len(timings) < 1000:
            t0 = time.monotonic()
            status, _ = client.predict(images[len(timings) % len(images)])
            timings.append(time.monotonic() - t0)
            assert status == 200
    finished_others = time.monotonic()
    slow.join(timeout=60)

    print(f"{len(timings)} requests during the slow upload, slowest {max(timings):.3f} s")
    assert len(timings) >= 10, f"only {len(timings)} requests completed during the slow upload"
    assert max(timings) < 5.0
    assert finished_others <= finished_sending[0] + 1.0
    assert response[0].startswith(b"HTTP/1.1 200"), response
