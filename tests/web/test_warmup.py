"""The models load when serving begins, once, never when the app is made (app.web.warmup):
/readyz says so, a request that needs a model waits for them, and a fresh app's first
prediction works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask

from app import create_app
from app.core.errors import NoModelsError
from tests.support.accounts import admin_client
from tests.support.models import ROOT
from tests.support.uploads import post_upload


class HeldBack:
    """The session's loaded service, whose ``load`` lasts until the test lets it end."""

    def __init__(self, service, fails: bool = False) -> None:
        self._service = service
        self._fails = fails
        self._ready = False
        self.release = threading.Event()
        self.loads = 0

    @property
    def ready(self) -> bool:
        return self._ready

    def load(self):
        self.loads += 1
        assert self.release.wait(timeout=60), "the test never let loading end"
        if self._fails:
            raise NoModelsError("a model file is damaged")
        self._ready = True
        return self

    def __getattr__(self, name: str):
        return getattr(self._service, name)


def make_app(app_config: dict[str, Any], service: HeldBack, **config: object) -> Flask:
    return create_app({**app_config, **config}, inference=service)  # type: ignore[arg-type]


def readyz_settled(client, timeout: float = 30.0):
    """/readyz's answer once the warm-up has ended, one way or the other."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/readyz")
        warming = answer.status_code == 503 and answer.get_json()["error"]["code"] == (
            "models_warming"
        )
        if not warming or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def predict(client, images):
    return post_upload(client, "/api/v1/predict", images.make(), "smear.png")


def test_readyz_says_warming_until_the_models_are_warm(
    app_config, inference_service, images
) -> None:
    held = HeldBack(inference_service)
    client = admin_client(make_app(app_config, held))
    assert client.get("/healthz").get_json() == {"status": "ok"}
    warming = client.get("/readyz")
    assert warming.status_code == 503
    assert warming.get_json()["error"]["code"] == "models_warming"
    assert client.get("/healthz").status_code == 200  # liveness is not readiness
    held.release.set()
    ready = readyz_settled(client)
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "models": [card.name for card in inference_service.models()],
    }
    assert predict(client, images).status_code == 200
    assert held.loads == 1  # once per process, never per request


def test_a_request_that_needs_a_model_waits_for_them(app_config, inference_service, images):
    held = HeldBack(inference_service)
    client = admin_client(make_app(app_config, held))
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(predict(client, images)))
    waiting.start()
    waiting.join(timeout=0.5)
    assert waiting.is_alive()
    assert not answers  # held while the models load
    held.release.set()
    waiting.join(timeout=60)
    assert answers[0].status_code == 200, answers[0].get_data(as_text=True)
    assert answers[0].get_json()["model"]["name"] == "lenet"
    assert held.loads == 1


def test_models_that_cannot_load_say_so(app_config, inference_service, images) -> None:
    held = HeldBack(inference_service, fails=True)
    held.release.set()
    client = admin_client(make_app(app_config, held))
    failed = readyz_settled(client)
    assert failed.status_code == 503
    assert failed.get_json()["error"]["code"] == "models_failed"
    refused = predict(client, images)
    assert refused.status_code == 503
    assert "could not be loaded" in refused.get_json()["error"]["message"]
    assert held.loads == 1  # a failure is not retried on every request


def test_the_first_request_starts_the_warm_up_under_flask_run(
    app_config, inference_service
) -> None:
    held = HeldBack(inference_service)
    app = make_app(app_config, held, WARM_UP_ON_FIRST_REQUEST=True)
    warmup = app.extensions["model_warmup"]
    assert warmup.state == "cold"  # making the app loads nothing
    assert app.test_client().get("/login").status_code == 200  # not kept waiting
    assert warmup.state == "warming"
    held.release.set()
    warmup.load()
    assert warmup.state == "ready"
    assert held.loads == 1


def test_a_fresh_apps_first_prediction_works(app_config, models_dir: Path, tmp_path, images):
    folder = tmp_path / "models"
    folder.mkdir()
    for path in models_dir.glob("lenet.*"):
        shutil.copy(path, folder / path.name)
    app = create_app({**app_config, "MODELS_DIR": str(folder)})
    assert app.extensions["model_warmup"].state == "cold"
    client = admin_client(app)
    assert client.get("/readyz").get_json()["error"]["code"] == "models_warming"
    answer = predict(client, images)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["model"]["name"] == "lenet"
    assert client.get("/readyz").get_json() == {"status": "ready", "models": ["lenet"]}
    app.extensions["records"].engine.dispose()


def test_making_the_app_imports_no_tensorflow(tmp_path: Path) -> None:
    code = (
        "import json, sys; from app import create_app; "
        "app = create_app({'APP_ENV': 'testing', 'SECRET_KEY': 't'}); "
        "print(json.dumps([app.extensions['model_warmup'].state, "
        "[m for m in ('tensorflow', 'keras') if m in sys.modules]]))"
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cases.sqlite3'}",
        "IMAGE_STORE": str(tmp_path / "images"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == ["cold", []]
