"""``python -m training export-labels`` on real databases (SQLite and PostgreSQL): the cells
reviewers classified, with their crops, boxes, photographs' sha256 and both classes, read
back as training crops; the export is audited and refuses a used folder or an old schema."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from sqlalchemy import Engine, select

from app.core.cells.crops import CROP_PX, read_photograph
from app.core.classes import CLASS_IDS
from app.core.explanation.gallery import cell_model_pictures
from app.core.model_card import ModelCard
from app.records.cases import new_case, reclassify_cell
from app.records.database import alembic_config, make_engine, session_factory, upgrade
from app.records.schema import AuditEvent, Case, CaseField, CellCrop
from tests.support.images import ImageFactory
from training.cell_bags import Bags
from training.cli import main
from training.reviewed_cells import (
    COLUMNS,
    ReviewedCells,
    read_labels,
    training_crop,
    with_single_cells,
)

CARD = ModelCard(name="cell_lenet", version="test", input_size=64, unit="cell")
FIELD = ImageFactory.cell_field([(0.3, 0.3, 1.6), (0.7, 0.6, 1.3), (0.5, 0.8, 1.4)])


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


def _case_with_reviewed_cells(engine: Engine) -> tuple[str, list[CellCrop]]:
    """A cell model's case of one photograph with three cells: the first reclassified, the
    second confirmed, the third not reviewed; and a field model's case with a segmented
    crop. The photograph's sha256 and the three cells."""
    pictures = cell_model_pictures(FIELD, read_photograph(FIELD))
    sha256 = hashlib.sha256(ImageFactory.encode(FIELD)).hexdigest()
    with session_factory(engine)() as session:
        case = new_case(session, "EXPORT-1", "", CARD)
        field = CaseField(
            position=1, sha256=sha256, size_bytes=1, state="answered", class_id="pre_b"
        )
        field.checks = {"cells": {"model": {}, "reviewed": {}}}
        field.cells = [
            CellCrop(
                index=p.index,
                box=p.box,
                image=p.jpeg,
                class_id="pre_b",
                probabilities={c: 0.25 for c in CLASS_IDS},
                attention=1 / 3,
                status="uncertain",
            )
            for p in pictures.cells
        ]
        case.fields.append(field)
        other = new_case(
            session, "SEGMENTED-1", "", ModelCard(name="lenet", version="1", input_size=224)
        )
        segmented = CaseField(position=1, sha256="0" * 64, size_bytes=1, state="answered")
        segmented.cells = [CellCrop(index=1, box=[0, 0, 9, 9], image=b"jpeg")]
        other.fields.append(segmented)
        session.flush()
        cells = list(field.cells)
        reclassify_cell(session, case, cells[0].id, "benign", "dr-a")
        reclassify_cell(session, case, cells[1].id, "pre_b", "dr-a")
        session.commit()
        return sha256, cells


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_reviewed_cells_are_exported_for_retraining(database: Any, tmp_path: Path) -> None:
    url, engine = database
    upgrade(engine)
    sha256, cells = _case_with_reviewed_cells(engine)
    out = tmp_path / "labels"

    assert main(["export-labels", "--out", str(out), "--database-url", url]) == 0
    rows = _rows(out)
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["reviewed_class"], r["model_class"]) for r in rows] == [
        ("benign", "pre_b"),
        ("pre_b", "pre_b"),  # a confirmation is a label too
    ]
    for row, cell in zip(rows, cells, strict=False):
        assert row["sha256"] == sha256
        assert row["model"] == "cell_lenet"
        assert [int(row[k]) for k in ("x", "y", "width", "height")] == cell.box
        assert (out / row["crop"]).read_bytes() == cell.image
        assert row["signed_off"] == "False"
        assert row["reviewed_at"]
    with session_factory(engine)() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "labels_exported")
        ).one()
        assert event.detail["cells"] == 2
        assert event.actor is not None
        assert event.actor.startswith("cli:")
        assert session.scalars(select(Case)).all()  # nothing else changed

    # Back as the model's inputs: a 64 px square whose stain is normalised like the field's.
    reviewed = read_labels(out)
    assert reviewed.crops.shape == (2, CROP_PX, CROP_PX, 3)
    assert reviewed.crops.dtype == np.uint8
    assert reviewed.labels.tolist() == [CLASS_IDS.index("benign"), CLASS_IDS.index("pre_b")]
    as_read = read_photograph(FIELD).crops[0].reshape(-1)
    again = training_crop(cells[0].image).astype(np.float32).reshape(-1) / 255
    assert np.corrcoef(as_read, again)[0, 1] > 0.9

    # A used folder is refused, and nothing in it is touched.
    assert main(["export-labels", "--out", str(out), "--database-url", url]) == 2
    assert len(_rows(out)) == 2


def test_an_old_schema_is_refused_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.sqlite3'}"
    engine = make_engine(url)
    command.upgrade(alembic_config(engine), "0010")
    assert main(["export-labels", "--out", str(tmp_path / "labels"), "--database-url", url]) == 2
    assert not (tmp_path / "labels" / "labels.csv").exists()
    engine.dispose()


def test_reviewed_cells_join_the_bags_as_bags_of_one() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (5, CROP_PX, CROP_PX, 3), np.uint8)
    bags = Bags(
        crops=crops,
        offsets=np.array([0, 2, 5]),
        labels=np.array([0, 2]),
        excluded=np.zeros(2, np.int64),
        unmeasured=np.zeros(2, bool),
    )
    extra = ReviewedCells(crops=crops[:2], labels=np.array([3, 1]))
    grown, added = with_single_cells(bags, extra)
    assert added.tolist() == [2, 3]
    assert len(grown) == 4
    assert [grown.count(i) for i in range(4)] == [2, 3, 1, 1]
    assert grown.labels.tolist() == [0, 2, 3, 1]
    np.testing.assert_array_equal(grown.cells(3)[0], crops[1])
    np.testing.assert_array_equal(grown.cells(1), bags.cells(1))
