"""A cell model served: each leukocyte answered with its box, class and status, and explained."""

from __future__ import annotations

import numpy as np
import pytest
from openapi_schema_validator import OAS31Validator

from app.core.errors import NoCellsError
from app.core.service import InferenceService
from app.web.analysis.presenter import prediction_json
from app.web.docs.openapi import openapi_document
from tests.support.cell_models import write_cell_model
from tests.support.images import ImageFactory

CELLS = [(0.3, 0.3, 1.6), (0.7, 0.6, 1.3)]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> InferenceService:
    folder = tmp_path_factory.mktemp("cell-models")
    write_cell_model(folder)
    return InferenceService(folder, default_model="cell_lenet").load()


def test_every_whole_leukocyte_is_answered_in_the_uploaded_photographs_pixels(
    service: InferenceService,
) -> None:
    image = ImageFactory.cell_field(CELLS, zoom=1.5)
    p = service.classify(ImageFactory.encode(image))
    assert p.cells is not None
    assert len(p.cells.cells) == 2
    for cell, (fx, fy, diameter) in zip(
        sorted(p.cells.cells, key=lambda c: c.box[0]), sorted(CELLS), strict=True
    ):
        x, y, w, h = cell.box
        assert x + w / 2 == pytest.approx(fx * image.width, abs=4)
        assert y + h / 2 == pytest.approx(fy * image.height, abs=4)
        assert w == pytest.approx(diameter * 24 * 1.5, rel=0.2)
        assert sum(cell.probabilities.values()) == pytest.approx(1.0)
        assert cell.status in ("classified", "uncertain")
    assert sum(p.cells.counts.values()) == 2
    assert sum(c.attention for c in p.cells.cells) == pytest.approx(1.0)
    assert p.cells.um_per_px == pytest.approx(7.5 / (24 * 1.5), rel=0.2)
    assert sum(p.probabilities.values()) == pytest.approx(1.0)


def test_a_photograph_without_a_whole_leukocyte_is_refused_with_its_reason(
    service: InferenceService,
) -> None:
    only_red_cells = ImageFactory.cell_field([(0.5, 0.0, 1.5)])
    with pytest.raises(NoCellsError) as caught:
        service.classify(ImageFactory.encode(only_red_cells))
    assert caught.value.status == 422
    assert caught.value.code == "no_cells"
    assert "1 objects were left out" in caught.value.message


def test_a_batch_keeps_each_photographs_cells_apart(service: InferenceService) -> None:
    one = ImageFactory.encode(ImageFactory.cell_field(CELLS[:1], seed=1))
    two = ImageFactory.encode(ImageFactory.cell_field(CELLS, seed=2))
    first, second = service.classify_many([one, two])
    assert not isinstance(first, Exception)
    assert not isinstance(second, Exception)
    assert first.cells is not None
    assert second.cells is not None
    assert (len(first.cells.cells), len(second.cells.cells)) == (1, 2)
    alone = service.classify(one)
    np.testing.assert_allclose(
        list(alone.probabilities.values()), list(first.probabilities.values()), atol=1e-5
    )


def test_the_answer_validates_against_the_openapi_description(service: InferenceService) -> None:
    p = service.explain(service.classify(ImageFactory.encode(ImageFactory.cell_field(CELLS))))
    body = prediction_json(p)
    document = openapi_document()
    schema = {"$ref": "#/components/schemas/Prediction", "components": document["components"]}
    OAS31Validator(schema).validate(body)
    assert body["unit"] == "cell"
    assert [set(c) >= {"box", "class", "probabilities", "status"} for c in body["cells"]] == [
        True,
        True,
    ]
    assert sum(body["cell_counts"].values()) == 2


def test_a_cell_answer_is_explained_cell_by_cell(service: InferenceService) -> None:
    p = service.explain(service.classify(ImageFactory.encode(ImageFactory.cell_field(CELLS))))
    assert p.explanation is not None
    assert p.explanation.gradcam_png.startswith(b"\x89PNG")
    assert p.explanation.cells_png.startswith(b"\x89PNG")
    assert p.explanation.gradcam_class == p.class_id


def test_the_model_list_says_which_unit_each_model_reads(service: InferenceService) -> None:
    assert [card.unit for card in service.models()] == ["cell"]
