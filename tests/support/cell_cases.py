"""A models folder that serves a cell model beside the default field model, and cases of a
cell model written straight to the records (known cells in known classes)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

from flask import Flask
from PIL import Image

from app.core.classes import CLASS_IDS
from app.core.model_card import ModelCard
from app.records.cases import new_case, refresh
from app.records.schema import CaseField, CellCrop
from tests.support.cell_models import write_cell_model
from tests.support.models import find_models_dir

CELL_MODEL = "cell_lenet"
# A cell's probabilities: its class leads with this, the others share the rest.
LEADING = 0.8


def cell_models_folder(folder: Path) -> Path | None:
    """``folder`` with the committed LeNet (the default model) and its split, and an
    untrained cell model; None when there are no committed models to copy."""
    committed = find_models_dir()
    if committed is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for path in [*committed.glob("lenet.*"), committed / "split.csv"]:
        if path.is_file():
            shutil.copy(path, folder / path.name)
    write_cell_model(folder, CELL_MODEL)
    return folder


def led_by(class_id: str) -> dict[str, float]:
    rest = (1 - LEADING) / (len(CLASS_IDS) - 1)
    return {c: LEADING if c == class_id else rest for c in CLASS_IDS}


def crop_jpeg(seed: int) -> bytes:
    """A small stand-in for a cell's crop (a flat colour per cell)."""
    colour = (120 + seed * 17 % 100, 70 + seed * 29 % 80, 150)
    out = io.BytesIO()
    Image.new("RGB", (96, 96), colour).save(out, format="JPEG")
    return out.getvalue()


def write_cell_case(
    app: Flask,
    reference: str,
    fields: list[list[str]],
    card: ModelCard | None = None,
    created_by: str = "admin",
) -> str:
    """A case of a cell model whose fields hold leukocytes of the given classes (one list
    per field), each field answered with its most common class; its id."""
    card = card or ModelCard(name=CELL_MODEL, version="test", input_size=64, unit="cell")
    with app.extensions["records"].sessions() as session:
        case = new_case(session, reference, "", card, created_by=created_by)
        for position, classes in enumerate(fields, start=1):
            counts = {c: classes.count(c) for c in CLASS_IDS}
            leading = max(CLASS_IDS, key=lambda c: counts[c])
            field = CaseField(
                position=position,
                filename=f"{position}.jpg",
                sha256=hashlib.sha256(f"{reference}{position}".encode()).hexdigest(),
                size_bytes=1,
                width=224,
                height=224,
                state="answered",
                class_id=leading,
                probabilities=led_by(leading),
                checks={"cells": {"model": counts, "reviewed": counts, "excluded": {}}},
            )
            field.cells = [
                CellCrop(
                    index=index,
                    box=[10 * index, 20, 30, 30],
                    image=crop_jpeg(position * 100 + index),
                    class_id=class_id,
                    probabilities=led_by(class_id),
                    attention=1 / len(classes),
                    status="classified",
                )
                for index, class_id in enumerate(classes, start=1)
            ]
            case.fields.append(field)
        refresh(case)
        session.commit()
        return case.public_id
