"""A worker killed in the middle of a case: no half-written case, the server goes on, and
``flask images gc`` removes the photographs the killed upload had stored.

A real gunicorn (one worker) on a SQLite file; a 150-field case is posted and the worker
is SIGKILLed while it analyses the photographs. Marked slow (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.core.model_files import model_names
from tests.support.images import smear_images, synth_images
from tests.support.models import DEFAULT_AND_LENET, ROOT, served_models_dir
from tests.support.server import GunicornServer, multipart

pytestmark = pytest.mark.slow

FIELDS = 150


def test_a_worker_killed_mid_case_leaves_no_half_written_case(tmp_path: Path) -> None:
    if not model_names(served_models_dir()):
        pytest.skip("no trained models")
    database = tmp_path / "cases.sqlite3"
    images = tmp_path / "images"
    env = {
        "SECRET_KEY": secrets.token_hex(32),
        "APP_ENV": "production",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "DATABASE_URL": f"sqlite:///{database}",
        "IMAGE_STORE": str(images),
    }
    server = GunicornServer(env=env, models=DEFAULT_AND_LENET).start()
    try:
        server.wait_ready(timeout=240)
        [worker] = server.wait_all_workers_ready(1, timeout=240)
        data_dir = os.environ.get("ALL_DATA_DIR")
        photos = smear_images(data_dir, 6) if data_dir else synth_images(6)
        parts = [("images", (f"{i}.jpg", photos[i % len(photos)])) for i in range(FIELDS)]
        body, content_type = multipart({"reference": "CRASH-1"}, parts)
        answer: list[object] = []

        def post() -> None:
            with server.client(timeout=120) as client:
                try:
                    answer.append(client.request("POST", "/api/v1/cases", body, content_type))
                except OSError as exc:  # the connection dies with the worker
                    answer.append(exc)

        thread = threading.Thread(target=post)
        thread.start()
        # The first group is analysed and its photographs stored; the others are to come.
        deadline = time.monotonic() + 60
        while len(stored(images)) < len(photos) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(worker, signal.SIGKILL)
        thread.join(timeout=120)
        assert answer
        assert not (isinstance(answer[0], tuple) and answer[0][0] == 201), answer

        # A new worker takes over; the database holds no trace of the killed case.
        server.wait_all_workers_ready(1, timeout=240)
        with server.client(timeout=60) as client:
            status, listed = client.request("GET", "/api/v1/cases")
        assert status == 200
        assert b'"total":0' in listed.replace(b" ", b"")
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("SELECT count(*) FROM cases").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM case_fields").fetchone()[0] == 0
        # And the next case goes through whole.
        with server.client(timeout=120) as client:
            small, small_type = multipart({"reference": "AFTER-1"}, parts[:3])
            status, _ = client.request("POST", "/api/v1/cases", small, small_type)
        assert status == 201

        # The killed upload's photographs that no case names are swept; the case's stay.
        with sqlite3.connect(database) as db:
            named = {row[0] for row in db.execute("SELECT sha256 FROM case_fields")}
        left = {p.name for p in stored(images)}
        assert len(named) == 3, (named, left)
        assert left > named, (named, left)
        swept = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "images", "gc", "--older-than", "0"],
            cwd=ROOT,
            env={**os.environ, **env, "MODELS_DIR": str(served_models_dir())},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert swept.returncode == 0, swept.stderr[-2000:]
        assert f"removed {len(left - named)} files" in swept.stdout, swept.stdout
        assert {p.name for p in stored(images)} == named
    finally:
        server.stop()


def stored(images: Path) -> list[Path]:
    return [p for p in images.rglob("*") if p.is_file() and not p.name.startswith(".")]
