"""Serving a cell model: classify the cells read of photographs in batches, pool per field.

``ServedCellModel`` is the cell counterpart of ``app.core.service.ServedModel``: the
inference service holds one per cell model, has each photograph's cells read
(``app.core.reading.decode_cells``, on an image thread or in an image process) and hands
them to a ``CellRun``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.cells.crops import CROP_PX
from app.core.cells.detect import NORMAL_RBC_PX, RBC_UM
from app.core.cells.explain import cell_heat, outline_cells_png
from app.core.cells.model import CellOutputs, LoadedCellModel, load_cell_model
from app.core.explanation.assemble import explain_with
from app.core.explanation.gradcam import GradCam
from app.core.explanation.heat_share import min_density
from app.core.guards.ood import OodGuard, OodNotFittedError, OodResult
from app.core.model_card import ModelCard
from app.core.pipeline import Measured
from app.core.prediction import CellAnswer, CellReading, Prediction, Timings
from app.core.reading import DecodedCells

log = logging.getLogger(__name__)

# A cell whose most likely class has less than this is shown as uncertain.
CELL_CONFIDENT = 0.6


@dataclass(frozen=True)
class ServedCellModel:
    """A loaded cell model and its out-of-distribution guard (None when not fitted)."""

    model: LoadedCellModel
    guard: OodGuard | None
    gradcam: GradCam

    @property
    def card(self) -> ModelCard:
        return self.model.card

    @classmethod
    def build(cls, models_dir: Path, name: str) -> ServedCellModel:
        model = load_cell_model(models_dir, name, served=True)
        try:
            guard: OodGuard | None = OodGuard.read(models_dir, model.card)
        except OodNotFittedError as exc:
            log.warning("serving cell model %r without an out-of-distribution check: %s", name, exc)
            guard = None
        # GradCam traces its graph here, not on the first request.
        gradcam = GradCam(model.keras_model, views=model.views)
        served = cls(model=model, guard=guard, gradcam=gradcam)
        served.model.run(np.zeros((1, CROP_PX, CROP_PX, 3), np.float32))
        return served

    def new_run(self) -> CellRun:
        """A batch of photographs for ``app.core.pipeline``: each one's cells through the
        network as it comes, while later photographs are read."""
        return CellRun(self)

    def prediction(
        self, d: DecodedCells, own: CellOutputs, stats: np.ndarray | None, model_ms: float
    ) -> Prediction:
        """A photograph's answer from its cells' network outputs and its guard statistics."""
        answer = self.model.answer(own)
        class_ids = self.model.class_ids
        ood: OodResult | None = None
        if self.guard is not None and stats is not None:
            ood = self.guard.score_statistics(answer.features[None], stats)[0]
        return Prediction(
            class_id=class_ids[int(np.argmax(answer.probabilities))],
            probabilities={
                c: float(p) for c, p in zip(class_ids, answer.probabilities, strict=True)
            },
            model=self.card,
            timings=Timings(
                decode_ms=d.decode_ms,
                preprocess_ms=d.preprocess_ms,
                model_ms=model_ms,
                total_ms=d.decode_ms + d.preprocess_ms + model_ms,
            ),
            image_format=d.image_format,
            image=d.image,
            field_image=d.image,
            photograph_size=d.photograph_size,
            model_input=None if d.ran is not None else d.cells.crops,
            ood=ood,
            uncertain_below=self.card.calibration.uncertain_below,
            min_heat_density=min_density(self.card),
            cells=self._reading(d, own, answer.weights),
        )

    def _reading(self, d: DecodedCells, own: CellOutputs, weights: np.ndarray) -> CellReading:
        # Boxes in the uploaded photograph's pixels: a big JPEG is decoded smaller.
        to_upload = d.photograph_size[0] / d.width
        probabilities = self.model.cell_probabilities(own)
        class_ids = self.model.class_ids
        # Whole arrays first: numpy's cost per call outweighs the work on one cell's row.
        tops = probabilities.argmax(axis=1).tolist()
        confident = (probabilities.max(axis=1) >= CELL_CONFIDENT).tolist()
        cells = []
        for cell, p, w, top, sure in zip(
            d.cells.used, probabilities.tolist(), weights.tolist(), tops, confident, strict=True
        ):
            x, y, bw, bh = (round(v * to_upload) for v in d.cells.photo_box(cell))
            cells.append(
                CellAnswer(
                    box=(x, y, bw, bh),
                    class_id=class_ids[top],
                    probabilities=dict(zip(class_ids, p, strict=True)),
                    attention=w,
                    status="classified" if sure else "uncertain",
                )
            )
        um_per_normal_px = RBC_UM / NORMAL_RBC_PX
        return CellReading(
            cells=cells,
            excluded=d.cells.excluded,
            um_per_px=um_per_normal_px * d.cells.factor / to_upload,
            upload_scale=to_upload,
            source=d.cells,
        )

    def explain(self, prediction: Prediction) -> Prediction:
        """The prediction with its cells outlined by class and a Grad-CAM of each cell."""
        reading = prediction.cells
        if reading is None or reading.source is None:
            raise ValueError("a cell model's prediction carries its cells")
        class_ids = self.model.class_ids
        indices = [class_ids.index(c.class_id) for c in reading.cells]
        weights = np.array([c.attention for c in reading.cells])
        source = reading.source
        _, field_image = prediction.pixels()
        return explain_with(
            prediction,
            lambda: cell_heat(self.gradcam, source, indices, weights),
            lambda _shown, _cells: outline_cells_png(field_image, reading),
        )


class CellRun:
    """A cell model on one batch of photographs (``app.core.pipeline.Run``): each one's cells
    go through the network as it comes (LiteRT takes a crop a call, so nothing is gained by
    gathering them), unless its image process ran them already. A photograph read in an image
    process brought its guard statistics, so it is answered at once; the others at the end,
    with the statistics made meanwhile."""

    def __init__(self, served: ServedCellModel) -> None:
        self._served = served
        self._done: list[_Classified] = []
        self._answers: list[Prediction | None] = []

    def add(self, decoded: DecodedCells) -> None:
        model = self._served.model
        if decoded.ran is not None:  # its image process ran the network on its crops
            done = _Classified(decoded, model.outputs_of(*decoded.ran.outputs), decoded.ran.ms)
        else:
            start = time.perf_counter()
            outputs = model.run(decoded.cells.crops)
            done = _Classified(decoded, outputs, (time.perf_counter() - start) * 1000)
        self._done.append(done)
        made = decoded.made
        self._answers.append(None if made is None else self._answer(done, made.stats))

    def finish(self, follow_ups: Callable[[], Sequence[Measured[Any]]]) -> list[Prediction]:
        if all(a is not None for a in self._answers):
            return [a for a in self._answers if a is not None]
        measured = follow_ups()
        return [
            self._answer(done, m.stats) if answer is None else answer
            for done, answer, m in zip(self._done, self._answers, measured, strict=True)
        ]

    def _answer(self, done: _Classified, stats: np.ndarray | None) -> Prediction:
        return self._served.prediction(
            done.decoded, done.outputs, None if stats is None else stats[None], done.model_ms
        )


@dataclass(frozen=True)
class _Classified:
    """A photograph whose cells have been through the network, and how long that took."""

    decoded: DecodedCells
    outputs: CellOutputs
    model_ms: float
