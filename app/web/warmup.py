"""The models load once per process when serving begins, never when the app is made.

Creating the app, and so every ``flask`` command, imports no TensorFlow. gunicorn loads
the models in each worker before it takes a request (``warm_up``, from gunicorn.conf.py);
under any other server (``flask run``) the first request starts loading them on a thread
of their own. A request that needs a model waits for them; /readyz answers 503 until
they are warm. The image processes that read a case's photographs start with them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flask import Flask

from app.core import image_processes
from app.core.collector import set_aside_loaded
from app.core.errors import NotReadyError
from app.core.model_files import served_names

if TYPE_CHECKING:
    from app.core.service import InferenceService

log = logging.getLogger(__name__)

State = Literal["cold", "warming", "ready", "failed"]

EXTENSION = "model_warmup"
LOAD_FAILED = "the models could not be loaded; see the server log"


class ModelWarmup:
    """Loads one inference service once, on its own thread; safe to call from any thread."""

    def __init__(
        self, models_dir: str | Path, default_model: str, service: InferenceService | None = None
    ) -> None:
        if service is None:
            # A folder without the models fails now, as it did before loading moved.
            served_names(models_dir, default_model)
        self._models_dir = Path(models_dir)
        self._default = default_model
        self._service = service
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._failure: Exception | None = None
        if service is not None and service.ready:
            self._done.set()

    @property
    def state(self) -> State:
        if self._done.is_set():
            return "failed" if self._failure is not None else "ready"
        return "cold" if self._thread is None else "warming"

    def start(self) -> None:
        """Begin loading in the background unless it has begun; returns at once."""
        if self._thread is not None or self._done.is_set():
            return
        with self._lock:
            if self._thread is None and not self._done.is_set():
                self._thread = threading.Thread(target=self._load, name="model-warmup", daemon=True)
                self._thread.start()

    def load(self) -> InferenceService:
        """The loaded service: begins loading if nothing has, then waits for it to end.
        NotReadyError (503) when loading failed."""
        self.start()
        self._done.wait()
        if self._failure is not None or self._service is None:
            raise NotReadyError(LOAD_FAILED) from self._failure
        return self._service

    def _load(self) -> None:
        started = time.monotonic()
        try:
            if self._service is None:
                from app.core.service import InferenceService  # TensorFlow, only now

                self._service = InferenceService(self._models_dir, self._default)
            self._service.load()
            log.info("models loaded and warmed up in %.1f s", time.monotonic() - started)
            log.info("%d image processes started", image_processes.warm())
        except Exception as exc:
            self._failure = exc
            log.exception("the models of %s could not be loaded", self._models_dir)
        finally:
            self._done.set()


def init_app(app: Flask, service: InferenceService | None) -> ModelWarmup:
    """Give ``app`` its models, not yet loaded unless ``service`` already is."""
    warmup = ModelWarmup(app.config["MODELS_DIR"], app.config["DEFAULT_MODEL"], service)
    app.extensions[EXTENSION] = warmup
    if app.config["WARM_UP_ON_FIRST_REQUEST"]:
        app.before_request(warmup.start)
    return warmup


def warm_up(wsgi_app: object) -> int:
    """Load the models of ``wsgi_app`` (the app gunicorn serves) now, before it serves, start
    its image processes, and set what is loaded aside from the garbage collector's passes
    (``set_aside_loaded``); returns how many objects were. Raises when the models cannot be
    loaded, so a worker that could not answer never starts."""
    extensions = getattr(wsgi_app, "extensions", None)
    if isinstance(extensions, dict) and EXTENSION in extensions:
        extensions[EXTENSION].load()
        log.info("%d image processes started", image_processes.warm())
    return set_aside_loaded()
