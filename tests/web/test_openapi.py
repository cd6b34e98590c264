"""The served OpenAPI description: valid, and true to what the API answers."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from app.core.case_words import CASE_STATUSES, REVIEW_DECISIONS, REVIEW_STATES
from app.core.prediction import CellStatus, Status
from tests.support.images import ImageFactory
from tests.support.server import multipart


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    return response.get_json()


def _check(document: dict[str, Any], schema_name: str, instance: object) -> None:
    schema = {
        "$ref": f"#/components/schemas/{schema_name}",
        **{"components": document["components"]},
    }
    OAS31Validator(schema).validate(instance)


def test_the_description_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert {"/api/v1/predict", "/api/v1/cases", "/api/v1/cases/{id}/report.pdf"} <= set(
        document["paths"]
    )


def test_every_api_route_is_described(app, document: dict[str, Any]) -> None:
    described = {
        (path.replace("{id}", "<public_id>"), method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == "/api/v1/openapi.json":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (rule.rule, method) in described, f"{method} {rule.rule} is not in openapi.json"


def test_real_answers_match_the_description(
    client: FlaskClient, document: dict[str, Any], images: ImageFactory
) -> None:
    files = [("images", (f"{i}.png", images.make(size=(160, 160), seed=i))) for i in range(2)]
    body, content_type = multipart({"reference": "DOC-1"}, [*files, ("images", ("x.txt", b"no"))])
    case = client.post("/api/v1/cases", data=body, content_type=content_type).get_json()
    _check(document, "Case", case)
    reviewed = client.post(
        f"/api/v1/cases/{case['id']}/review", json={"decision": "override", "class": "benign"}
    )
    _check(document, "Case", reviewed.get_json())
    body, content_type = multipart({}, [("image", ("a.png", images.make(size=(160, 160))))])
    _check(
        document,
        "Prediction",
        client.post("/api/v1/predict", data=body, content_type=content_type).get_json(),
    )
    _check(document, "Error", client.get("/api/v1/cases/none").get_json())
    _check(document, "ModelList", client.get("/api/v1/models").get_json())


def test_the_docs_page_lists_every_operation(client: FlaskClient, document: dict[str, Any]) -> None:
    html = client.get("/api/docs").get_data(as_text=True)
    for path in document["paths"]:
        assert f"<code>{path}</code>" in html


def test_the_model_schema_describes_the_intended_use(document: dict[str, Any]) -> None:
    model = document["components"]["schemas"]["Model"]
    use = model["properties"]["intended_use"]
    assert "intended_use" in model["required"]
    assert {"purpose", "out_of_scope", "known_failures", "data"} <= set(use["properties"])
    failure = use["properties"]["known_failures"]["items"]
    assert {"true_class", "called", "count", "of"} <= set(failure["properties"])
    # A card that does not state it yet is answered with null, not refused.
    bare = {
        "name": "m",
        "display_name": "M",
        "version": "1",
        "input_size": 64,
        "unit": "cell",
        "views": 1,
    }
    _check(document, "Model", {**bare, "intended_use": None})


def test_the_status_and_review_enums_are_the_cores_words(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    case_statuses = [
        schemas["Case"]["properties"]["status"]["enum"],
        schemas["CaseSummary"]["properties"]["status"]["enum"],
    ]
    assert case_statuses == [list(CASE_STATUSES)] * 2
    assert schemas["CaseSummary"]["properties"]["review_state"]["enum"] == list(REVIEW_STATES)
    search = {
        p["name"]: p["schema"].get("enum")
        for p in document["paths"]["/api/v1/cases"]["get"]["parameters"]
    }
    assert search["status"] == list(CASE_STATUSES)
    assert search["review"] == list(REVIEW_STATES)
    body = document["paths"]["/api/v1/cases/{id}/review"]["post"]["requestBody"]["content"]
    decisions = [c["schema"]["properties"]["decision"]["enum"] for c in body.values()]
    assert decisions == [list(REVIEW_DECISIONS)] * len(body)
    assert body
    assert schemas["Review"]["properties"]["decision"]["enum"] == list(REVIEW_DECISIONS)
    assert schemas["Prediction"]["properties"]["status"]["enum"] == list(get_args(Status))
    assert schemas["CaseImage"]["properties"]["status"]["enum"] == [*get_args(Status), "refused"]
    cell = schemas["CaseImage"]["properties"]["cells"]["items"]["properties"]["status"]
    assert cell["enum"] == list(get_args(CellStatus))
