"""Cells a reviewer classified, out of the case records and back into training.

``python -m training export-labels --out DIR`` reads the app's database (``--database-url``,
else ``DATABASE_URL``, else the development SQLite file) and writes every cell of a cell
model's case that a reviewer reclassified or confirmed: its crop as the gallery shows it
(``cells/<id>.jpg``) and a line of ``labels.csv`` with the photograph's sha256, the cell's
box in it, the reviewer's class and the model's. The export is written to the audit trail.

``python -m training train-cells --extra-labels DIR`` adds each exported cell to the train
split as a bag of one cell labelled with the reviewer's class (``with_single_cells``): the
only supervision a cell gets that is not its field's label.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from app.core.cells.crops import CROP_PX
from app.core.cells.detect import leukocyte_mask
from app.core.cells.stain import normalise_stain
from app.core.classes import CLASS_IDS
from app.records.audit import record
from app.records.database import make_engine, require_current, session_factory, sqlite_url
from app.records.schema import Case, CaseField, CellCrop
from training.cell_bags import Bags

ROOT = Path(__file__).resolve().parents[1]
# Where the app keeps its records in development (app.web.records' default).
DEVELOPMENT_DATABASE = ROOT / "instance" / "cases.sqlite3"
LABELS = "labels.csv"
CROPS = "cells"
COLUMNS = (
    "crop",
    "sha256",
    "x",
    "y",
    "width",
    "height",
    "reviewed_class",
    "model_class",
    "model",
    "model_version",
    "reviewed_at",
    "signed_off",
)


class ExportError(RuntimeError):
    """The labels cannot be exported or read; the message says why."""


def database_url(given: str | None) -> str:
    """The database to read: the one given, else DATABASE_URL, else the development file."""
    return given or os.environ.get("DATABASE_URL") or sqlite_url(DEVELOPMENT_DATABASE)


def export_labels(url: str, out: Path) -> int:
    """Write the reviewed cells into ``out`` (new or empty) and record the export in the
    audit trail; how many cells were written. The database must be at the current schema."""
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty: the labels go into a new folder")
    engine = make_engine(url)
    try:
        require_current(engine)
        with session_factory(engine)() as session:
            rows = session.execute(
                select(CellCrop, CaseField.sha256, Case.model_name, Case.model_version, Case)
                .join(CaseField, CellCrop.field_id == CaseField.id)
                .join(Case, CaseField.case_id == Case.id)
                .where(CellCrop.reviewed_class.is_not(None), CellCrop.class_id.is_not(None))
                .order_by(CellCrop.id)
            ).all()
            (out / CROPS).mkdir(parents=True, exist_ok=True)
            try:
                with (out / LABELS).open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(COLUMNS)
                    for cell, sha256, model, version, case in rows:
                        name = f"{CROPS}/{cell.id}.jpg"
                        (out / name).write_bytes(cell.image)
                        stamp = None if cell.reviewed_at is None else cell.reviewed_at.isoformat()
                        writer.writerow(
                            [name, sha256, *cell.box, cell.reviewed_class, cell.class_id]
                            + [model, version, stamp, case.signed_off is not None]
                        )
                record(
                    session,
                    "labels_exported",
                    f"cli:{getpass.getuser()}"[:64],
                    cells=len(rows),
                    folder=str(out.resolve()),
                )
                session.commit()
            except Exception:
                shutil.rmtree(out / CROPS, ignore_errors=True)
                (out / LABELS).unlink(missing_ok=True)
                raise
    finally:
        engine.dispose()
    return len(rows)


@dataclass(frozen=True)
class ReviewedCells:
    """Exported cells as the cell path's training crops (stain-normalised uint8) and the
    reviewers' classes as class indices."""

    crops: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def training_crop(jpeg: bytes) -> np.ndarray:
    """A gallery crop back to what the model reads: the model's square at CROP_PX, its stain
    normalised over the crop's own leukocyte (the field's other cells are not in the export)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        square = image.convert("RGB").resize((CROP_PX, CROP_PX), Image.Resampling.LANCZOS)
    rgb = np.asarray(square, np.float32) / 255.0
    stained = normalise_stain(rgb, leukocyte_mask(rgb))
    return np.asarray(np.clip(stained, 0, 1) * 255 + 0.5, np.uint8)


def read_labels(folder: Path) -> ReviewedCells:
    """The cells of an export (``export_labels``), in its order."""
    path = folder / LABELS
    if not path.exists():
        raise ExportError(f"{path} is missing: export the labels with export-labels first")
    crops, labels = [], []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["reviewed_class"] not in CLASS_IDS:
                raise ExportError(f"{path}: unknown class {row['reviewed_class']!r}")
            crop = (folder / row["crop"]).resolve()
            if not crop.is_relative_to(folder.resolve()):
                raise ExportError(f"{path}: {row['crop']!r} is outside the export")
            crops.append(training_crop(crop.read_bytes()))
            labels.append(CLASS_IDS.index(row["reviewed_class"]))
    empty = np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8)
    return ReviewedCells(
        crops=np.stack(crops) if crops else empty, labels=np.array(labels, np.int64)
    )


def with_single_cells(bags: Bags, cells: ReviewedCells) -> tuple[Bags, np.ndarray]:
    """``bags`` with one more bag per reviewed cell, labelled with the reviewer's class, and
    the new bags' indices (to add to the train split)."""
    start = len(bags)
    ends = bags.offsets[-1] + np.arange(1, len(cells) + 1)
    grown = Bags(
        crops=np.concatenate([bags.crops, cells.crops]),
        offsets=np.concatenate([bags.offsets, ends]).astype(np.int64),
        labels=np.concatenate([bags.labels, cells.labels]).astype(np.int64),
        excluded=np.concatenate([bags.excluded, np.zeros(len(cells), np.int64)]),
        unmeasured=np.concatenate([bags.unmeasured, np.zeros(len(cells), bool)]),
    )
    return grown, np.arange(start, start + len(cells), dtype=np.int64)
