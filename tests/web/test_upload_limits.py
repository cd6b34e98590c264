"""A request over a limit is told which limit it passed: a case's total, the form's number of
parts, a text field's size or one photograph's, in the pages and the API alike."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.server import multipart

MB = 1024 * 1024


@pytest.fixture
def small_limits(app: Flask) -> Flask:
    """One photograph may be 1 MB and a case's photographs 3 MB, so the tests send little."""
    app.config["MAX_CONTENT_LENGTH"] = 1 * MB
    app.config["MAX_CASE_UPLOAD_BYTES"] = 3 * MB
    return app


def case_body(sizes: list[int], **form: str) -> tuple[bytes, str]:
    files = [("images", (f"{i}.png", b"x" * size)) for i, size in enumerate(sizes)]
    return multipart({"reference": "LIMIT-1", **form}, files)


def csrf_token(client: FlaskClient) -> str:
    page = client.get("/cases/new").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def error_of(response) -> str:
    assert response.status_code == 413, response.get_data(as_text=True)[:500]
    return str(response.get_json()["error"]["message"])


def test_a_case_over_its_total_is_told_the_case_limit_not_the_photograph_limit(
    small_limits: Flask, client: FlaskClient
) -> None:
    body, content_type = case_body([900_000] * 4)  # each under 1 MB, together over 3 MB
    message = error_of(client.post("/api/v1/cases", data=body, content_type=content_type))
    assert "a case's photographs in one request may total 3 MB" in message
    assert "1 MB" not in message


def test_the_case_form_takes_more_than_one_photograph_limit_and_names_its_own(
    small_limits: Flask, client: FlaskClient
) -> None:
    token = csrf_token(client)
    # Within the case's total but over one photograph's limit: the CSRF check read the form
    # with the photograph's limit, so this was refused (and its error page failed).
    body, content_type = case_body([900_000] * 2, csrf_token=token)
    created = client.post("/cases/", data=body, content_type=content_type)
    assert created.status_code == 303, created.get_data(as_text=True)[:500]
    body, content_type = case_body([900_000] * 4, csrf_token=token)
    refused = client.post("/cases/", data=body, content_type=content_type)
    assert refused.status_code == 413
    page = refused.get_data(as_text=True)
    assert "a case&#39;s photographs in one request may total 3 MB" in page
    assert 'id="case-form"' in page


def test_a_form_with_too_many_parts_is_told_the_parts_limit(client: FlaskClient) -> None:
    body, content_type = case_body([1] * 1001)
    message = error_of(client.post("/api/v1/cases", data=body, content_type=content_type))
    assert "more than 1,000 parts" in message
    assert "MB" not in message


def test_a_text_field_over_its_limit_is_told_so(client: FlaskClient) -> None:
    body, content_type = case_body([10], note="n" * 600_000)
    message = error_of(client.post("/api/v1/cases", data=body, content_type=content_type))
    assert "A text field of the form is over 500 KB" in message


def test_a_prediction_over_the_photograph_limit_names_it(
    small_limits: Flask, client: FlaskClient
) -> None:
    body, content_type = multipart({}, {"image": ("a.png", b"x" * (MB + 10))})
    message = error_of(client.post("/api/v1/predict", data=body, content_type=content_type))
    assert message == "The file is too large; the limit is 1 MB."
