"""A served network run on LiteRT (TensorFlow Lite's interpreter), without TensorFlow.

The serving process converts a model's network (``app.core.runtime.convert``) and keeps the
converted file; an image process opens the same file (``opened``, by its ``NetworkFile``) to
run the network on the photographs it reads, so a case's network calls share the cores with
its image work. One input a call: an input's outputs never depend on what else went in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

from app.core.native_log import native_stderr_logged

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkFile:
    """Where a converted network is kept, the SHA-256 of its bytes and its views: what an
    image process needs to open it."""

    path: Path
    sha256: str
    views: int


@dataclass(frozen=True)
class NetworkRun:
    """A network's outputs on one photograph's input, in its order, and the ms it took."""

    outputs: tuple[np.ndarray, ...]
    ms: float


def all_orientations(x: np.ndarray) -> np.ndarray:
    """(B, H, W, C) -> (8B, H, W, C), as ``app.core.orientations.all_orientations``."""
    out = []
    for k in range(4):
        turned = np.rot90(x, k, axes=(1, 2))
        out += [turned, turned[:, :, ::-1]]
    return np.ascontiguousarray(np.concatenate(out))


def cache_dir() -> Path | None:
    """Where converted networks are kept between processes: ``LITERT_CACHE_DIR``, else a
    folder of this user's in the temporary directory; None when it cannot be made."""
    configured = os.environ.get("LITERT_CACHE_DIR", "").strip()
    folder = Path(configured or tempfile.gettempdir()) / (
        "" if configured else f"ball-classifier-litert-{os.getuid()}"
    )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_uid != os.getuid():
            return None  # someone else's folder: its files are not to be trusted
    except OSError:
        return None
    return folder


def threads() -> int:
    """Threads per network call: TensorFlow's setting (gunicorn sets it per worker), else 1
    (a photograph's network is too small to share)."""
    configured = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()
    return max(1, int(configured)) if configured else 1


class LiteNetwork:
    """A served network's outputs on LiteRT; ``run`` is safe from several threads (one
    interpreter, taken in turn: an input's call is a few milliseconds or less). ``file``:
    where it is kept for the image processes (None: it is not)."""

    def __init__(self, flat: bytes, views: int = 1, file: NetworkFile | None = None) -> None:
        with native_stderr_logged(LOG):
            self._interpreter = Interpreter(model_content=flat, num_threads=threads())
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        # The converter names a function's outputs Identity, Identity_1... in their order.
        outputs = sorted(
            self._interpreter.get_output_details(),
            key=lambda d: int(d["name"].rpartition("_")[2]) if "_" in d["name"] else 0,
        )
        self._outputs = [d["index"] for d in outputs]
        self._lock = threading.Lock()
        self.views = views
        self.file = file

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The outputs, in the network's order, of a batch (B, S, S, 3) of float32 inputs,
        each the mean over its views."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.views == 1:
            return self.call(x)
        outputs = self.call(all_orientations(x))
        return [o.reshape(self.views, len(x), *o.shape[1:]).mean(axis=0) for o in outputs]

    def timed(self, x: np.ndarray) -> NetworkRun:
        """``run`` with the ms it took."""
        start = time.perf_counter()
        outputs = self.run(x)
        return NetworkRun(tuple(outputs), (time.perf_counter() - start) * 1000)

    def call(self, x: np.ndarray) -> list[np.ndarray]:
        """The outputs of each input of ``x`` as it is (no views), one input a call."""
        interpreter = self._interpreter
        rows: list[list[np.ndarray]] = [[] for _ in self._outputs]
        with self._lock:
            for i in range(len(x)):
                interpreter.set_tensor(self._input, x[i : i + 1])
                interpreter.invoke()  # releases the GIL: the image threads go on meanwhile
                for row, index in zip(rows, self._outputs, strict=True):
                    row.append(interpreter.get_tensor(index))
        if not len(x):
            return [
                np.zeros((0, *interpreter.get_tensor(i).shape[1:]), np.float32)
                for i in self._outputs
            ]
        return [np.concatenate(row) for row in rows]


def kept(path: Path | None, flat: bytes, views: int) -> NetworkFile | None:
    """The ``NetworkFile`` of ``flat`` kept at ``path``; None when there is no file there (no
    cache folder, or it could not be written). An image process checks the file's bytes
    against the SHA-256 when it opens it (``opened``)."""
    if path is None or not path.is_file():
        return None
    return NetworkFile(path, hashlib.sha256(flat).hexdigest(), views)


_opened: dict[NetworkFile, LiteNetwork | None] = {}
_opening = threading.Lock()


def opened(file: NetworkFile) -> LiteNetwork | None:
    """The network kept in ``file``, opened once per process; None when the file is gone or
    holds other bytes than the serving process converted (the serving process then runs it)."""
    with _opening:
        if file not in _opened:
            _opened[file] = _open(file)
        return _opened[file]


def _open(file: NetworkFile) -> LiteNetwork | None:
    try:
        flat = file.path.read_bytes()
    except OSError as exc:
        LOG.warning("the converted network %s cannot be read: %s", file.path, exc)
        return None
    if hashlib.sha256(flat).hexdigest() != file.sha256:
        LOG.warning("the converted network %s changed since it was loaded", file.path)
        return None
    return LiteNetwork(flat, file.views, file)


def run_kept(file: NetworkFile | None, x: np.ndarray) -> NetworkRun | None:
    """The network of ``file`` on ``x``, timed; None without a file or when it cannot be
    opened."""
    network = None if file is None else opened(file)
    return None if network is None else network.timed(x)
