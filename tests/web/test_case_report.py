"""The case report holds what the case page holds: the screen's verdict and evidence, the
model's name and version, times in the lab's time zone, and reviewers by their full names."""

from __future__ import annotations

import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from fpdf import FPDF
from pypdf import PdfReader
from sqlalchemy import select

from app import create_app
from app.core.service import InferenceService
from app.records.schema import Review, User
from app.web.cases.pdf import _lines
from app.web.config import ConfigError
from tests.support.accounts import admin_client
from tests.web.test_cases import stored_case


@pytest.fixture
def tehran_app(app_config: dict[str, object], inference_service: InferenceService):
    app = create_app({**app_config, "LAB_TIMEZONE": "Asia/Tehran"}, inference=inference_service)
    yield app
    app.extensions["records"].engine.dispose()


def _reviewed(app: Flask, url: str) -> None:
    """A signed-off review by the admin, who has a full name."""
    with app.extensions["records"].sessions() as session:
        admin = session.scalars(select(User).where(User.username == "admin")).one()
        admin.display_name = "Dr Sara Ahmadi"
        case_id = url.rsplit("/", 1)[1]
        from app.records.cases import get_case

        case = get_case(session, case_id)
        case.reviews.append(
            Review(reviewer="admin", decision="agree", class_id="pre_b", signed_off=True)
        )
        session.commit()


def _pdf_text(data: bytes) -> str:
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    return " ".join(text.split())


def test_the_pdf_holds_the_evidence_the_model_and_the_reviewers_full_name(
    tehran_app: Flask,
) -> None:
    client: FlaskClient = admin_client(tehran_app)
    url = stored_case(tehran_app, "MIX-1", ["benign"] * 9 + ["pre_b"])
    _reviewed(tehran_app, url)
    text = _pdf_text(client.get(url + "/report.pdf").data)
    assert "Blasts suspected in 1 of 10 fields: pattern most like Pre-B ALL" in text
    assert "1 field of 10 (10%) show blasts" in text
    assert "field 10" in text
    assert "flow cytometry" in text
    assert re.search(r"Class Fields Mean probability Benign \(hematogones\) 9 ", text), text
    assert "Dr Sara Ahmadi (admin)" in text
    assert "(+0330, Asia/Tehran)" in text
    assert " UTC" not in text
    assert "screening: any answered malignant field escalates the case" in text


def test_the_printable_report_says_the_same(tehran_app: Flask) -> None:
    client = admin_client(tehran_app)
    url = stored_case(tehran_app, "MIX-2", ["benign"] * 4 + ["pre_b"] * 2)
    _reviewed(tehran_app, url)
    page = client.get(url + "/report").get_data(as_text=True)
    assert "Blasts suspected in 2 of 6 fields" in page
    assert 'id="report-evidence"' in page
    assert "Dr Sara Ahmadi (admin)" in page
    assert "Asia/Tehran" in page
    assert "UTC" not in page.split("<main", 1)[1]


def test_the_case_page_shows_times_in_the_labs_zone(tehran_app: Flask) -> None:
    client = admin_client(tehran_app)
    url = stored_case(tehran_app, "MIX-3", ["benign"])
    _reviewed(tehran_app, url)
    page = client.get(url).get_data(as_text=True)
    assert page.count("(+0330, Asia/Tehran)") == 2  # created, review
    assert " UTC<" not in page
    assert "(+0330, Asia/Tehran)" in client.get("/cases/").get_data(as_text=True)


def test_an_unknown_time_zone_stops_the_app(app_config: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="LAB_TIMEZONE"):
        create_app({**app_config, "LAB_TIMEZONE": "Mars/Olympus"})


def test_an_admin_gives_a_new_user_a_full_name(app: Flask) -> None:
    from tests.support.accounts import form_token

    client = admin_client(app)
    token = form_token(client.get("/admin/users").get_data(as_text=True))
    made = client.post(
        "/admin/users",
        data={
            "username": "sara",
            "role": "clinician",
            "display_name": " Dr Sara Ahmadi ",
            "csrf_token": token,
        },
    )
    assert made.status_code == 303
    assert "Dr Sara Ahmadi" in client.get("/admin/users").get_data(as_text=True)
    with app.extensions["records"].sessions() as session:
        sara = session.scalars(select(User).where(User.username == "sara")).one()
        assert sara.display_name == "Dr Sara Ahmadi"


@pytest.mark.parametrize("words", [3, 60])
def test_report_text_takes_as_many_lines_as_it_needs(words: int) -> None:
    # A line that fits is one cell; a longer text still wraps, each word kept.
    text = " ".join(f"word{i}" for i in range(words))
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", size=9.5)
    top = pdf.get_y()
    _lines(pdf, 100, 5, text, new_x="LMARGIN", new_y="NEXT")
    lines = round((pdf.get_y() - top) / 5)
    wrapped = pdf.get_string_width(text) > 100 - 2 * pdf.c_margin
    assert lines > 1 if wrapped else lines == 1
    assert words == 3 or wrapped
    shown = _pdf_text(bytes(pdf.output()))
    assert shown == text
