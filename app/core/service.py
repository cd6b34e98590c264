"""Turns uploaded image bytes into a typed, calibrated, guarded prediction.

``InferenceService`` loads every model of a models folder once per process,
builds its Grad-CAM and out-of-distribution guard, warms them up, and is then
shared by all request threads. Classification (probabilities, OOD check,
uncertain flag) and explanation (segmented cells, Grad-CAM and outline PNGs)
are separate steps: a plain API call pays only for the first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from app.core import image_processes
from app.core.allocator import keep_working_memory
from app.core.cells.serving import ServedCellModel
from app.core.classes import CLASS_IDS
from app.core.errors import AnalysisRefusedError, NoModelsError, NotReadyError, UnknownModelError
from app.core.explanation.assemble import explain_with
from app.core.explanation.gradcam import GradCam
from app.core.explanation.heat_share import min_density
from app.core.explanation.segmentation import outline_png
from app.core.guards.ood import OodGuard, OodNotFittedError, OodResult
from app.core.model_card import ModelCard
from app.core.model_files import model_files, served_names
from app.core.model_store import BATCH, LoadedModel, load_model
from app.core.pipeline import Measured, Reading, analyse, analyse_read
from app.core.prediction import Prediction, Timings
from app.core.reading import (
    DecodedCells,
    DecodedImage,
    arrived,
    decode_cells,
    decode_field,
    read_cells_of,
    read_fields,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000


@dataclass(frozen=True)
class ServedModel:
    """A loaded model with everything built for it at start-up."""

    model: LoadedModel
    gradcam: GradCam
    guard: OodGuard | None

    @property
    def card(self) -> ModelCard:
        return self.model.card

    @classmethod
    def build(cls, models_dir: Path, name: str) -> ServedModel:
        model = load_model(models_dir, name, served=True)
        if tuple(model.class_ids) != CLASS_IDS:
            raise NoModelsError(
                f"model {name!r} predicts {model.class_ids}, the app expects {list(CLASS_IDS)}"
            )
        try:
            guard: OodGuard | None = OodGuard.load(models_dir, model)
        except OodNotFittedError as exc:
            log.warning(
                "serving model %r without an out-of-distribution check: %s "
                "(run `python -m training fit-ood`)",
                name,
                exc,
            )
            guard = None
        # GradCam traces its graph here, not on the first request.
        served = cls(model=model, gradcam=GradCam(model), guard=guard)
        served.warm_up()
        return served

    def warm_up(self) -> None:
        """One pass through every path, so the first request traces nothing."""
        size = self.model.input_size
        blank = np.zeros((size, size, 3), np.float32)
        self.model.predict(blank[None])
        if self.guard is not None:
            features, _ = self.guard.forward(blank)
            self.guard.score_features(features, Image.new("RGB", (size, size)))
        self.gradcam.heatmap(blank, 0)


Served = ServedModel | ServedCellModel


def build_served(models_dir: Path, name: str) -> Served:
    """The served form of model ``name``: its card says whether it reads fields or cells."""
    card = ModelCard.load(model_files(models_dir, name).card)
    if tuple(card.class_ids) != CLASS_IDS:
        raise NoModelsError(
            f"model {name!r} predicts {card.class_ids}, the app expects {list(CLASS_IDS)}"
        )
    if card.unit == "cell":
        return ServedCellModel.build(models_dir, name)
    return ServedModel.build(models_dir, name)


class InferenceService:
    """Serves every model of a folder; load once per process, then share across threads."""

    def __init__(self, models_dir: str | Path, default_model: str = "lenet") -> None:
        self.models_dir = Path(models_dir)
        self._default = default_model
        self._lock = threading.Lock()
        self._served: dict[str, Served] = {}
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        """True once every model is loaded and has answered one warm-up prediction."""
        return self._ready.is_set()

    @property
    def default_model(self) -> str:
        return self._default

    def load(self) -> InferenceService:
        """Load and warm up every model; idempotent and safe to call from several threads."""
        with self._lock:
            if self._ready.is_set():
                return self
            keep_working_memory()  # before the first photograph, for every thread
            names = served_names(self.models_dir, self._default)
            self._served = {name: build_served(self.models_dir, name) for name in names}
            self._ready.set()
        return self

    def with_default(self, name: str) -> InferenceService:
        """The same loaded models, served with ``name`` as the default: nothing loads again."""
        self.load()
        served_names(self.models_dir, name)  # NoModelsError when the folder lacks it
        other = InferenceService(self.models_dir, name)
        other._served = self._served
        other._ready.set()
        return other

    def models(self) -> list[ModelCard]:
        """The cards of the served models, in name order."""
        self._require_ready()
        return [served.card for served in self._served.values()]

    def served(self, name: str | None = None) -> Served:
        """The served model called ``name`` (the default one when empty)."""
        return self._served[self.resolve(name)]

    def field_model(self, name: str | None = None) -> ServedModel:
        """``served``, for a caller that needs a model of the whole field (benchmarks, the
        heat evaluation); UnknownModelError for a cell model."""
        served = self.served(name)
        if not isinstance(served, ServedModel):
            raise UnknownModelError(f"model {served.card.name!r} reads cells, not whole fields")
        return served

    def resolve(self, name: str | None) -> str:
        """The served model called ``name``, or the default one when ``name`` is empty."""
        self._require_ready()
        name = (name or "").strip().lower() or self._default
        if name not in self._served:
            raise UnknownModelError(
                f"unknown model {name!r}; choose one of: {', '.join(self._served)}"
            )
        return name

    def classify(self, data: bytes, model: str | None = None) -> Prediction:
        """Classify one uploaded image given as bytes; never touches the disk.

        Calibrated probabilities, the OOD check (when the model has a guard)
        and the uncertain flag. Raises UnknownModelError, UnsupportedImageError,
        ImageDecodeError, ImageTooLargeError, CaptureError (cells at a scale the
        model cannot be given) or NotReadyError.
        """
        outcome = self.classify_many([data], model)[0]
        if isinstance(outcome, AnalysisRefusedError):
            raise outcome
        return outcome

    def classify_many(
        self, items: Sequence[bytes], model: str | None = None
    ) -> list[Prediction | AnalysisRefusedError]:
        """``classify`` for several images at once (``analyse_each``).

        An image that cannot be classified gets its error in its place in the list;
        the others are classified. UnknownModelError and NotReadyError are raised.
        """
        return [outcome for outcome, _ in self.analyse_each(items, model)]

    def analyse_each(
        self,
        items: Sequence[bytes],
        model: str | None = None,
        follow: Callable[[int, Decoded], T] | None = None,
        pixels: bool = True,
        pictures: bool = False,
    ) -> Iterator[tuple[Prediction | AnalysisRefusedError, T | None]]:
        """Each image's prediction or refusal in order, with what ``follow(index, decoded)``
        gave for it (storing the photograph, say), made while the model runs
        (``app.core.pipeline``); the model pass and the guard score batches of BATCH, a
        batch's results given as it ends. UnknownModelError and NotReadyError are raised
        at once.

        ``pixels``: each prediction keeps its photograph's pixels, for its explanation.
        Without them, several images are read in the image processes where there are any
        (``app.core.image_processes``), with their pictures when ``pictures`` is set
        (``decoded.made.extra``), in batches of READ_BATCH; else on the image threads,
        where ``follow`` makes its own."""
        served = self.served(model)
        if len(items) > 1 and not pixels:
            read = self._read_in_processes(items, served, follow, pictures)
            if read is not None:
                return read
        return _read_here(items, served, follow)

    def _read_in_processes(
        self,
        items: Sequence[bytes],
        served: Served,
        follow: Callable[[int, Decoded], T] | None,
        pictures: bool,
    ) -> Iterator[tuple[Prediction | AnalysisRefusedError, T | None]] | None:
        """``analyse_each`` with the photographs read in the image processes; None when
        there are none."""
        guarded = served.guard is not None
        # The processes run the network too where they can open its file.
        network = None if served.model.network is None else served.model.network.file
        reading: Reading[Any] | None
        if isinstance(served, ServedCellModel):
            reading = image_processes.start(read_cells_of, items, guarded, pictures, network)
            new_run: Callable[[], Any] = served.new_run
        else:
            loaded = served.model
            reading = image_processes.start(
                read_fields, items, loaded.input_size, loaded.card.scale, guarded, pictures, network
            )
            new_run = partial(_FieldRun, served)
        if reading is None:
            return None
        return _taken_from(reading, new_run, items, served, follow)

    def explain(self, prediction: Prediction) -> Prediction:
        """The prediction with its segmented cells and its Grad-CAM and outline PNGs."""
        served = self.served(prediction.model.name)
        if isinstance(served, ServedCellModel):
            return served.explain(prediction)
        class_index = served.model.class_ids.index(prediction.class_id)
        return explain_with(
            prediction,
            lambda: served.gradcam.heatmap(prediction.network_input(), class_index),
            outline_png,
        )

    def predict(self, data: bytes, model: str | None = None, explain: bool = False) -> Prediction:
        """``classify``, then ``explain`` when asked: segmentation doubles a request's time."""
        prediction = self.classify(data, model)
        return self.explain(prediction) if explain else prediction

    def _require_ready(self) -> None:
        if not self._ready.is_set():
            raise NotReadyError("the models are still loading; try again in a moment")


Decoded = DecodedImage | DecodedCells
# A case's photographs read in the image processes are answered this many at a time, so the
# request records each batch while the processes read the next.
READ_BATCH = 8


def _read_here(
    items: Sequence[bytes], served: Served, follow: Callable[[int, Decoded], T] | None
) -> Iterator[tuple[Prediction | AnalysisRefusedError, T | None]]:
    """``analyse_each`` on the image threads of this process."""
    if isinstance(served, ServedCellModel):
        cells = served
        return analyse(
            items,
            _cells_or_refuse,
            cells.new_run,
            BATCH,
            None if cells.guard is None else _photograph,
            follow,
        )
    field = served
    return analyse(
        items,
        lambda data: _decode_or_refuse(data, field.model),
        lambda: _FieldRun(field),
        BATCH,
        None if field.guard is None else _field_of,
        follow,
    )


def _taken_from(
    reading: Reading[Any],
    new_run: Callable[[], Any],
    items: Sequence[bytes],
    served: Served,
    follow: Callable[[int, Decoded], T] | None,
) -> Iterator[tuple[Prediction | AnalysisRefusedError, T | None]]:
    """The results of the photographs the image processes read, as they come; when their
    pool breaks (a process killed), those not yet given are read on the image threads."""
    given = 0
    try:
        for result in analyse_read(reading, arrived, new_run, READ_BATCH, follow):
            yield result
            given += 1
    except BrokenProcessPool:
        image_processes.discard()
        rest = None if follow is None else partial(_shifted, follow, given)
        yield from _read_here(items[given:], served, rest)


def _shifted(follow: Callable[[int, Decoded], T], offset: int, index: int, d: Decoded) -> T:
    return follow(index + offset, d)


def _decode_or_refuse(data: bytes, loaded: LoadedModel) -> DecodedImage | AnalysisRefusedError:
    try:
        return decode_field(data, loaded.input_size, loaded.card.scale)
    except AnalysisRefusedError as exc:
        return exc


def _cells_or_refuse(data: bytes) -> DecodedCells | AnalysisRefusedError:
    try:
        return decode_cells(data)
    except AnalysisRefusedError as exc:
        return exc


def _photograph(decoded: DecodedCells) -> Image.Image:
    assert decoded.image is not None  # decoded on a thread: the pixels are here
    return decoded.image


def _field_of(decoded: DecodedImage) -> Image.Image:
    assert decoded.field_image is not None  # decoded on a thread: the pixels are here
    return decoded.field_image


class _FieldRun:
    """A field model on one batch: each photograph through the network as it comes (the
    served network takes one image a call, so this is the batch's pass), then the batch's
    probabilities and guard scores at once. Each image's steps are its own work: its own
    network call, its own statistics."""

    def __init__(self, served: ServedModel) -> None:
        self._served = served
        self._decoded: list[DecodedImage] = []
        self._features: list[np.ndarray] = []
        self._logits: list[np.ndarray] = []
        self._model_ms: list[float] = []

    def add(self, decoded: DecodedImage) -> None:
        guard = self._served.guard
        features: np.ndarray | None = None
        if decoded.ran is not None:  # its image process ran the network
            features, logits = decoded.ran.outputs
            model_ms = decoded.ran.ms
        else:
            x = decoded.x[None]
            start = time.perf_counter()
            if guard is not None:
                # One pass gives both the guard's features and the logits.
                features, logits = guard.forward(x)
            else:
                logits = self._served.model.logits(x)
            model_ms = _ms(start, time.perf_counter())
        if guard is not None and features is not None:
            self._features.append(features)
        self._logits.append(logits)
        self._model_ms.append(model_ms)
        self._decoded.append(decoded)

    def finish(self, follow_ups: Callable[[], Sequence[Measured[Any]]]) -> list[Prediction]:
        measured = follow_ups()  # the network already ran on each photograph, in ``add``
        if not self._decoded:
            return []
        loaded, guard = self._served.model, self._served.guard
        probs = loaded.probabilities(np.concatenate(self._logits))
        n = len(self._decoded)
        oods: list[OodResult | None] = [None] * n
        ood_ms = [0.0] * n
        if guard is not None:
            stats = np.stack([m.stats for m in measured if m.stats is not None])
            scoring = time.perf_counter()
            oods = list(guard.score_statistics(np.concatenate(self._features), stats))
            scored_ms = _ms(scoring, time.perf_counter()) / n
            ood_ms = [m.stats_ms + scored_ms for m in measured]
        predictions = []
        for j, d in enumerate(self._decoded):
            class_index = int(np.argmax(probs[j]))
            model_ms = self._model_ms[j]
            predictions.append(
                Prediction(
                    class_id=loaded.class_ids[class_index],
                    probabilities={
                        c: float(p) for c, p in zip(loaded.class_ids, probs[j], strict=True)
                    },
                    model=loaded.card,
                    timings=Timings(
                        decode_ms=d.decode_ms,
                        preprocess_ms=d.preprocess_ms,
                        model_ms=model_ms,
                        ood_ms=ood_ms[j] if guard is not None else None,
                        total_ms=d.decode_ms + d.preprocess_ms + model_ms + ood_ms[j],
                    ),
                    image_format=d.image_format,
                    image=d.image,
                    field_image=d.field_image,
                    photograph_size=d.photograph_size,
                    scale=d.scale,
                    model_input=None if d.ran is not None else d.x,
                    ood=oods[j],
                    uncertain_below=loaded.card.calibration.uncertain_below,
                    min_heat_density=min_density(loaded.card),
                )
            )
        return predictions
