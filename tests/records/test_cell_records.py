"""A cell model's cells in the case records, on SQLite and PostgreSQL: migration 0011 up and
down over existing crops, each cell stored with its class, and a reviewer's class."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from PIL import Image
from sqlalchemy import Engine, select

from app.core.cells.crops import CROP_PX
from app.core.explanation.gallery import prediction_pictures
from app.core.model_card import ModelCard
from app.core.service import InferenceService
from app.records.cases import (
    CaseInputError,
    CaseLockedError,
    CellNotFoundError,
    ReviewInput,
    add_field,
    add_review,
    cell_counts,
    cell_image,
    classified_cells,
    field_outcome,
    new_case,
    reclassify_cell,
    refresh,
)
from app.records.database import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from app.records.schema import Case, CaseField, CellCrop
from tests.support.cell_models import write_cell_model
from tests.support.images import ImageFactory

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
NEW_COLUMNS = {
    "class_id",
    "probabilities",
    "attention",
    "status",
    "reviewed_class",
    "reviewed_by",
    "reviewed_at",
}
CELLS = [(0.3, 0.3, 1.6), (0.7, 0.6, 1.3)]


@pytest.fixture(scope="module")
def cell_service(tmp_path_factory: pytest.TempPathFactory) -> InferenceService:
    folder = tmp_path_factory.mktemp("cell-models")
    write_cell_model(folder)
    return InferenceService(folder, default_model="cell_lenet").load()


def _tables(engine: Engine) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(engine)
    return dict(metadata.tables)


def _old_crop(engine: Engine) -> None:
    """A case with one field and one segmented crop, as 0010 kept them."""
    tables = _tables(engine)
    with engine.begin() as connection:
        case_id = connection.execute(
            tables["cases"]
            .insert()
            .values(
                public_id="pid-old",
                reference="OLD",
                note="",
                created_at=NOW,
                updated_at=NOW,
                model_name="lenet",
                model_version="1.3.0",
                rule={},
                status="benign",
                class_id="benign",
                review_state="none",
            )
            .returning(tables["cases"].c.id)
        ).scalar_one()
        field_id = connection.execute(
            tables["case_fields"]
            .insert()
            .values(
                case_id=case_id,
                position=1,
                filename="1.jpg",
                sha256="0" * 64,
                size_bytes=1,
                state="answered",
                class_id="benign",
                probabilities={"benign": 1.0},
                checks={},
                timings={},
                stored=False,
                created_at=NOW,
            )
            .returning(tables["case_fields"].c.id)
        ).scalar_one()
        connection.execute(
            tables["cell_crops"]
            .insert()
            .values(field_id=field_id, index=1, box=[1, 2, 30, 40], image=b"jpeg")
        )


def test_0011_adds_the_cells_classes_and_reviews_and_goes_back(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "0010")
    _old_crop(engine)
    command.upgrade(alembic_config(engine), "0011")
    assert current_revision(engine) == "0011"
    crops = _tables(engine)["cell_crops"]
    assert NEW_COLUMNS <= set(crops.c.keys())
    with engine.begin() as connection:
        old = connection.execute(sa.select(crops)).one()
        # A segmented crop of before stays valid: no class, no review.
        assert (old.box, old.image, old.class_id, old.reviewed_class) == (
            [1, 2, 30, 40],
            b"jpeg",
            None,
            None,
        )
        connection.execute(
            crops.insert().values(
                field_id=old.field_id,
                index=2,
                box=[5, 6, 7, 8],
                image=b"cell",
                class_id="pre_b",
                probabilities={"pre_b": 0.9},
                attention=0.5,
                status="classified",
                reviewed_class="pro_b",
                reviewed_by="dr-a",
                reviewed_at=NOW,
            )
        )
        read = connection.execute(sa.select(crops).where(crops.c.index == 2)).one()
        stamp = read.reviewed_at  # SQLite keeps no zone; the ORM's UtcDateTime adds UTC
        assert read.attention == 0.5
        assert (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)) == NOW

    command.downgrade(alembic_config(engine), "0010")
    crops = _tables(engine)["cell_crops"]
    assert not NEW_COLUMNS & set(crops.c.keys())
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(crops)).scalar() == 2
    assert upgrade(engine) == head_revision()


def test_a_cell_models_cells_are_stored_with_their_classes_and_reviewed(
    engine: Engine, cell_service: InferenceService
) -> None:
    upgrade(engine)
    card = cell_service.served().card
    data = ImageFactory.encode(ImageFactory.cell_field(CELLS))
    prediction = cell_service.classify(data)
    assert prediction.cells is not None
    sessions = session_factory(engine)
    with sessions() as session:
        case = new_case(session, "CELL-1", "", card)
        add_field(session, case, "1.png", data, prediction, None, prediction_pictures(prediction))
        refresh(case)
        session.commit()
        public_id = case.public_id

    with sessions() as session:
        case = session.scalars(select(Case).where(Case.public_id == public_id)).one()
        stored = [cell for _, cell in classified_cells(session, case)]
        answers = prediction.cells.cells
        assert [c.index for c in stored] == [1, 2]
        assert [c.box for c in stored] == [list(a.box) for a in answers]
        assert [c.class_id for c in stored] == [a.class_id for a in answers]
        assert [c.status for c in stored] == [a.status for a in answers]
        assert stored[0].probabilities == pytest.approx(answers[0].probabilities)
        assert stored[1].attention == pytest.approx(answers[1].attention)
        # The crop is the one the model read, at the model's own pixels.
        image = cell_image(session, case, stored[0].id)
        assert image is not None
        crop = Image.open(io.BytesIO(image))
        assert (crop.format, crop.size) == ("JPEG", (CROP_PX, CROP_PX))
        field = case.fields[0]
        assert field.checks["cells"]["model"] == prediction.cells.counts
        assert field_outcome(field).cells == prediction.cells.counts

        model_class = stored[0].class_id
        other = next(c for c in ("benign", "pro_b") if c != model_class)
        done = reclassify_cell(session, case, stored[0].id, other, "dr-a")
        assert done is not None
        assert (done.before, done.after, done.position) == (
            model_class,
            other,
            1,
        )
        assert reclassify_cell(session, case, stored[0].id, other, "dr-a") is None  # no change
        with pytest.raises(CaseInputError):
            reclassify_cell(session, case, stored[0].id, "blast", "dr-a")
        with pytest.raises(CellNotFoundError):
            reclassify_cell(session, case, stored[-1].id + 1000, other, "dr-a")
        session.commit()

    with sessions() as session:
        case = session.scalars(select(Case).where(Case.public_id == public_id)).one()
        cells = [cell for _, cell in classified_cells(session, case)]
        counts = cell_counts(cells)
        assert counts.model == prediction.cells.counts
        assert counts.reviewed[other] == prediction.cells.counts[other] + 1
        assert counts.n_reviewed == 1
        assert counts.total == 2
        assert (cells[0].reviewed_by, cells[0].reviewed_at is not None) == ("dr-a", True)
        # The field's differential, which the case rule reads, follows the review.
        assert field_outcome(case.fields[0]).cells == counts.reviewed
        add_review(
            session,
            case,
            ReviewInput("override", "pro_b", sign_off=True, microscope_confirmation="seen at x100"),
            reviewer="dr-a",
        )
        session.commit()
        with pytest.raises(CaseLockedError):
            reclassify_cell(session, case, cells[1].id, other, "dr-a")


def test_a_segmented_crop_has_no_class_to_review(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cases.sqlite3'}")
    upgrade(engine)
    with session_factory(engine)() as session:
        case = new_case(session, "SEG-1", "", ModelCard(name="lenet", version="1", input_size=224))
        session.flush()
        field = _segmented_field(case)
        session.commit()
        assert classified_cells(session, case) == []
        with pytest.raises(CellNotFoundError):
            reclassify_cell(session, case, field.cells[0].id, "benign", "dr-a")
    engine.dispose()


def _segmented_field(case: Case) -> CaseField:
    field = CaseField(
        position=1, sha256="1" * 64, size_bytes=1, state="answered", class_id="benign"
    )
    field.cells = [CellCrop(index=1, box=[0, 0, 10, 10], image=b"jpeg")]
    case.fields.append(field)
    return field
