"""The product's default: the cell LeNet reads each leukocyte, on the pages and the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.core.model_files import model_names
from app.core.service import InferenceService
from app.web.config import Config
from tests.support.accounts import signed_in, token_for, with_token
from tests.support.images import ImageFactory
from tests.support.server import multipart

CELLS = [(0.3, 0.3, 1.6), (0.7, 0.6, 1.3)]


@pytest.fixture(scope="module")
def default_service(models_dir: Path, inference_service: InferenceService) -> InferenceService:
    """The session's loaded models with the product's default (the session serves LeNet-5)."""
    if Config.DEFAULT_MODEL not in model_names(models_dir):
        pytest.skip(f"{Config.DEFAULT_MODEL} is not in {models_dir}")
    return inference_service.with_default(Config.DEFAULT_MODEL)


@pytest.fixture
def default_app(
    app_config: dict[str, object], default_service: InferenceService
) -> Iterator[Flask]:
    config = {k: v for k, v in app_config.items() if k != "DEFAULT_MODEL"}
    app = create_app(config, inference=default_service)
    yield app
    app.extensions["records"].engine.dispose()


@pytest.fixture
def default_client(default_app: Flask) -> FlaskClient:
    client = signed_in(default_app.test_client(), "admin")
    return with_token(client, token_for(default_app, "admin"))


def test_the_default_model_is_the_cell_lenet(default_app: Flask) -> None:
    assert default_app.config["DEFAULT_MODEL"] == "cell_lenet"
    models = default_app.test_client()
    page = signed_in(models, "admin").get("/")
    assert page.status_code == 200
    assert b"Cell LeNet-5" in page.data


def test_an_answer_without_a_model_named_reads_each_leukocyte(default_client: FlaskClient) -> None:
    image = ImageFactory.encode(ImageFactory.cell_field(CELLS))
    body, content_type = multipart({}, [("image", ("field.png", image))])
    answer = default_client.post("/api/v1/predict", data=body, content_type=content_type)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    data = answer.get_json()
    assert data["unit"] == "cell"
    assert data["model"]["name"] == "cell_lenet"
    assert len(data["cells"]) == 2
    assert sum(data["cell_counts"].values()) == 2


def test_a_photograph_without_a_whole_leukocyte_is_a_clear_422(
    default_client: FlaskClient,
) -> None:
    image = ImageFactory.encode(ImageFactory.cell_field([(0.5, 0.0, 1.5)]))
    body, content_type = multipart({}, [("image", ("edge.png", image))])
    answer = default_client.post("/api/v1/predict", data=body, content_type=content_type)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["code"] == "no_cells"


def test_a_case_of_the_default_model_counts_its_leukocytes(default_client: FlaskClient) -> None:
    files = [
        ("images", (f"{i}.png", ImageFactory.encode(ImageFactory.cell_field(CELLS, seed=i))))
        for i in range(3)
    ]
    body, content_type = multipart({"reference": "CELLS-1"}, files)
    case = default_client.post("/api/v1/cases", data=body, content_type=content_type)
    assert case.status_code in (200, 201), case.get_data(as_text=True)
    data = case.get_json()
    assert [len(image["cells"]) for image in data["images"]] == [2, 2, 2]
    assert sum(data["cell_counts"]["model"].values()) == 6
    # The verdict's differential counts the answered fields' cells only.
    evidence = data["evidence"]
    assert 0 <= evidence["blast_cells"] <= sum(evidence["cell_counts"].values()) <= 6
