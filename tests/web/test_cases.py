"""Cases through the web pages and the API, on a real SQLite database and image store."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select

from app.records.schema import AuditEvent, Case, CaseField, FieldView, Review
from app.web.analysis.presenter import class_verdict
from app.web.records import db
from tests.support.accounts import admin_client
from tests.support.cases import write_case
from tests.support.images import ImageFactory
from tests.support.server import multipart


def token_of(client: FlaskClient, url: str = "/cases/new") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert match
    return match.group(1)


def post_case(
    client: FlaskClient,
    files: list[tuple[str, bytes]],
    url: str = "/cases/",
    headers: dict[str, str] | None = None,
    **form: str,
):
    body, content_type = multipart(dict(form), [("images", f) for f in files])
    return client.post(url, data=body, content_type=content_type, headers=headers or {})


def count(app: Flask, table: type) -> int:
    with app.app_context():
        return int(db().scalar(select(func.count()).select_from(table)) or 0)


def refused_review(client: FlaskClient, url: str, form: dict[str, str]) -> str:
    """Post a review the page must refuse: a 303 back to the case (never a page as the POST's
    answer), whose next GET shows the message, once. Returns the page."""
    response = client.post(url + "/reviews", data=form)
    assert response.status_code == 303, response.status_code
    assert response.headers["Location"] == url + "#review-error"
    page = client.get(url).get_data(as_text=True)
    assert 'id="review-error"' in page
    assert 'id="review-error"' not in client.get(url).get_data(as_text=True)
    return page


def open_fields(client: FlaskClient, url: str, positions: list[int]) -> None:
    for position in positions:
        assert client.get(f"{url}/fields/{position}").status_code == 200


def stored_case(app: Flask, reference: str, classes: list[str], expected: int | None = None) -> str:
    """A case written straight to the records, its fields answered with ``classes`` (under
    the screening rule that escalates on any answered malignant field); its page URL."""
    return f"/cases/{write_case(app, reference, classes, expected=expected)}"


def audit_detail(app: Flask, url: str, action: str) -> dict[str, Any]:
    with app.extensions["records"].sessions() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.object_id == url.rsplit("/", 1)[1])
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None, f"no {action} event"
        return dict(event.detail)


@pytest.fixture(params=["sqlite", "postgresql"])
def app_config(request: pytest.FixtureRequest, app_config: dict[str, object]) -> dict[str, object]:
    """Every case test runs on a SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return app_config
    return {**app_config, "DATABASE_URL": request.getfixturevalue("migrated_postgres_url")}


@pytest.fixture
def token(client: FlaskClient) -> str:
    return token_of(client)


@pytest.fixture
def synthetic(images: ImageFactory) -> list[tuple[str, bytes]]:
    return [(f"field-{i}.png", images.make(size=(160, 160), seed=i)) for i in range(3)]


def test_a_case_is_created_from_many_files_and_lands_on_its_own_url(
    client: FlaskClient, token: str, synthetic: list[tuple[str, bytes]]
) -> None:
    files = [*synthetic, ("notes.txt", b"not an image at all")]
    response = post_case(client, files, reference="S-2026/0001", note="left arm", csrf_token=token)
    assert response.status_code == 303
    url = response.headers["Location"]
    assert re.fullmatch(r"/cases/[A-Za-z0-9_-]{16}", url)

    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "S-2026/0001" in html
    assert "left arm" in html
    assert re.search(r'id="case-model">LeNet-5 · version \d', html)
    assert 'id="case-verdict"' in html
    assert 'id="case-findings"' in html
    # The bad file is listed with its own reason; the others were analysed.
    assert "notes.txt" in html
    assert "Not analysed:" in html
    case = client.get(url, headers={"Accept": "application/json"}).get_json()
    states = [f["status"] for f in case["images"]]
    assert len(states) == 4
    assert states[3] == "refused"
    assert "refused" not in states[:3]
    assert case["images"][3]["error"]["code"] == "unsupported_media_type"
    assert case["evidence"]["excluded"]["refused"] == 1
    assert case["model"]["name"] == "lenet"
    assert case["model"]["version"]
    # Reload gives the same page: nothing is posted again.
    assert client.get(url).get_data(as_text=True).count('class="field-card') == 4


def test_the_script_path_creates_the_case_then_adds_each_file(
    app: Flask, client: FlaskClient, token: str, synthetic: list[tuple[str, bytes]]
) -> None:
    json_headers = {"Accept": "application/json"}
    created = post_case(
        client, [], headers=json_headers, reference="S-2", files_follow="3", csrf_token=token
    )
    assert created.status_code == 201
    body = created.get_json()
    for name, data in synthetic:
        added = post_case(
            client, [(name, data)], url=body["fields_url"], headers=json_headers, csrf_token=token
        )
        assert added.status_code == 200
        assert [f["position"] for f in added.get_json()["images"]] == [
            synthetic.index((name, data)) + 1
        ]
    assert count(app, CaseField) == 3
    case = client.get(body["url"], headers=json_headers).get_json()
    assert [f["filename"] for f in case["images"]] == [name for name, _ in synthetic]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("", "Give the case a reference"),
        ("Jane\nDoe", "The reference may hold"),
        ("x" * 65, "The reference may hold"),
    ],
)
def test_a_bad_case_form_is_shown_again_with_the_reason_and_nothing_is_kept(
    app: Flask,
    client: FlaskClient,
    token: str,
    synthetic: list[tuple[str, bytes]],
    reference: str,
    message: str,
) -> None:
    response = post_case(
        client, synthetic[:1], csrf_token=token, note="kept in the form", reference=reference
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html
    assert 'id="case-form"' in html
    assert "kept in the form" in html
    assert count(app, Case) == 0
    assert count(app, CaseField) == 0


def test_a_case_without_files_is_refused(client: FlaskClient, token: str) -> None:
    response = post_case(client, [], reference="S-3", csrf_token=token)
    assert response.status_code == 422
    assert "Choose the photographs" in response.get_data(as_text=True)


def test_more_than_200_files_are_refused_before_any_is_analysed(
    app: Flask, client: FlaskClient, token: str
) -> None:
    files = [(f"{i}.png", b"x") for i in range(201)]
    response = post_case(client, files, reference="S-4", csrf_token=token)
    assert response.status_code == 413
    assert "at most 200" in response.get_data(as_text=True)
    assert count(app, Case) == 0


def test_a_form_without_its_csrf_token_is_refused(client: FlaskClient, synthetic) -> None:
    response = post_case(client, synthetic[:1], reference="S-5")
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)


def _answered_files(
    inference_service, smear_images, class_id: str, n: int
) -> list[tuple[str, bytes]]:
    """Real photographs of one class that LeNet answers (neither uncertain nor flagged)."""
    chosen = []
    for path in smear_images[class_id]:
        data = path.read_bytes()
        p = inference_service.classify(data, "lenet")
        if p.status in ("malignant", "benign") and p.class_id == class_id:
            chosen.append((path.name, data))
    if len(chosen) < n:
        pytest.skip(f"fewer than {n} answered {class_id} photographs among the first files")
    return chosen[:n]


@pytest.mark.data
def test_review_sign_off_locks_the_case_and_a_correction_is_a_linked_review(
    app: Flask, client: FlaskClient, token: str, inference_service, smear_images
) -> None:
    files = _answered_files(inference_service, smear_images, "pro_b", 2)
    url = post_case(client, files, reference="S-6", csrf_token=token).headers["Location"]
    case = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert case["status"] == "malignant"
    assert case["class"] == "pro_b"
    assert case["evidence"]["review_fields"] == [1, 2]
    open_fields(client, url, [1, 2])

    signed = client.post(
        url + "/reviews",
        data={"decision": "agree", "comment": "blasts seen", "sign_off": "1", "csrf_token": token},
    )
    assert signed.status_code == 303
    html = client.get(url).get_data(as_text=True)
    assert f"Agreed: {class_verdict('pro_b')}" in html
    assert 'id="signed-note"' in html
    assert 'id="add-form"' not in html

    # Signed off: no more fields, no unsigned review (each refusal redirects to the page).
    more = post_case(client, files[:1], url=url + "/fields", csrf_token=token)
    assert more.status_code == 303
    assert more.headers["Location"] == url + "#add-error"
    page = client.get(url).get_data(as_text=True)
    assert 'id="add-error"' in page
    assert "signed off and can no longer change" in page
    unsigned = refused_review(client, url, {"decision": "agree", "csrf_token": token})
    assert "was signed off by admin" in unsigned
    # A second sign-off by someone who did not see the first is told, not made a correction.
    unaware = refused_review(
        client,
        url,
        {
            "decision": "override",
            "class_id": "pre_b",
            "comment": "looks pre-B",
            "sign_off": "1",
            "csrf_token": token,
        },
    )
    assert "was signed off by admin" in unaware
    first = client.get(url, headers={"Accept": "application/json"}).get_json()["review"]["id"]
    assert f'name="corrects" value="{first}"' in html
    silent = refused_review(
        client,
        url,
        {
            "decision": "override",
            "class_id": "pre_b",
            "sign_off": "1",
            "corrects": str(first),
            "csrf_token": token,
        },
    )
    assert "why the signed-off verdict is corrected" in silent
    assert '<option value="pre_b" selected>' in silent  # the refused form's values are back

    corrected = client.post(
        url + "/reviews",
        data={
            "decision": "override",
            "class_id": "pre_b",
            "comment": "flow: CD10+",
            "sign_off": "1",
            "corrects": str(first),
            "csrf_token": token,
        },
    )
    assert corrected.status_code == 303
    reviews = client.get(url, headers={"Accept": "application/json"}).get_json()["reviews"]
    assert [(r["decision"], r["class_id"], r["signed_off"]) for r in reviews] == [
        ("agree", "pro_b", True),
        ("override", "pre_b", True),
    ]
    assert reviews[1]["supersedes"] == reviews[0]["id"]
    assert reviews[0]["comment"] == "blasts seen"  # the first review is unchanged
    assert count(app, CaseField) == 2
    assert count(app, Review) == 2


def test_agreeing_with_an_uncertain_case_is_refused(client: FlaskClient, token: str) -> None:
    url = post_case(client, [("a.txt", b"nothing")], reference="S-7", csrf_token=token).headers[
        "Location"
    ]
    response = refused_review(client, url, {"decision": "agree", "csrf_token": token})
    assert "nothing to agree with" in response
    override = refused_review(client, url, {"decision": "override", "csrf_token": token})
    assert "Choose the class or finding" in override


def test_filters_show_the_fields_of_one_verdict(client: FlaskClient, token: str, synthetic) -> None:
    files = [*synthetic[:1], ("bad.bin", b"\x00\x01")]
    url = post_case(client, files, reference="S-8", csrf_token=token).headers["Location"]
    refused = client.get(url + "?show=refused").get_data(as_text=True)
    assert refused.count('class="field-card') == 1
    assert "bad.bin" in refused
    assert client.get(url + "?show=all").get_data(as_text=True).count('class="field-card') == 2
    assert client.get(url + "?show=nonsense").status_code == 200


def test_a_field_page_explains_the_stored_original(
    client: FlaskClient, token: str, synthetic
) -> None:
    url = post_case(client, synthetic[:1], reference="S-9", csrf_token=token).headers["Location"]
    page = client.get(url + "/fields/1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="back-to-case"' in html
    assert 'id="gradcam"' in html
    assert 'id="verdict"' in html
    thumb = client.get(url + "/fields/1/thumbnail.jpg")
    assert thumb.status_code == 200
    assert thumb.mimetype == "image/jpeg"
    assert thumb.data[:2] == b"\xff\xd8"
    assert client.get(url + "/fields/2").status_code == 404
    assert client.get("/cases/no-such-case").status_code == 404
    assert 'id="full-view"' in html
    full = client.get(url + "/fields/1/field.jpg")
    assert full.status_code == 200
    assert full.mimetype == "image/jpeg"


def test_without_the_image_store_only_thumbnails_and_hashes_are_kept(
    app_config, inference_service, synthetic, tmp_path: Path
) -> None:
    from app import create_app

    app = create_app({**app_config, "STORE_IMAGES": False}, inference=inference_service)
    client = admin_client(app)
    url = post_case(client, synthetic[:2], reference="S-10", csrf_token=token_of(client)).headers[
        "Location"
    ]
    case = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert [f["stored"] for f in case["images"]] == [False, False]
    assert all(len(f["sha256"]) == 64 and f["thumbnail_url"] for f in case["images"])
    assert not (tmp_path / "records" / "images").exists()
    assert "was not kept" in client.get(url + "/fields/1").get_data(as_text=True)
    assert client.get(url + "/fields/1/field.jpg").status_code == 404
    app.extensions["records"].engine.dispose()


def test_deleting_a_case_removes_its_records_and_the_files_no_other_case_uses(
    app: Flask, client: FlaskClient, token: str, synthetic, tmp_path: Path
) -> None:
    store = tmp_path / "records" / "images"
    first = post_case(client, synthetic[:2], reference="S-11", csrf_token=token).headers["Location"]
    second = post_case(client, synthetic[1:2], reference="S-12", csrf_token=token).headers[
        "Location"
    ]
    assert len([p for p in store.rglob("*") if p.is_file()]) == 2
    client.post(
        first + "/reviews", data={"decision": "override", "class_id": "benign", "csrf_token": token}
    )

    wrong = client.post(first + "/delete", data={"confirm": "S-12", "csrf_token": token})
    assert wrong.status_code == 303
    assert wrong.headers["Location"] == first + "/delete"
    assert "Type the case reference" in client.get(first + "/delete").get_data(as_text=True)
    deleted = client.post(first + "/delete", data={"confirm": "S-11", "csrf_token": token})
    assert deleted.status_code == 303
    assert deleted.headers["Location"] == "/cases/"
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    # The file the second case shares stays; the other is gone, folders and all.
    assert len([p for p in store.rglob("*") if p.is_file()]) == 1
    assert count(app, Case) == 1
    assert count(app, CaseField) == 1
    assert count(app, Review) == 0


def test_the_case_list_shows_every_case_newest_first(
    client: FlaskClient, token: str, synthetic
) -> None:
    for reference in ("S-13", "S-14"):
        post_case(client, synthetic[:1], reference=reference, csrf_token=token)
    html = client.get("/cases/").get_data(as_text=True)
    assert html.index("S-14") < html.index("S-13")


def test_the_report_is_a_printable_record(client: FlaskClient, token: str, synthetic) -> None:
    url = post_case(client, synthetic[:2], reference="S-15", csrf_token=token).headers["Location"]
    html = client.get(url + "/report").get_data(as_text=True)
    assert 'id="report-reference">S-15<' in html
    assert "Not reviewed" in html
    assert "report.css" in html
    assert "not a diagnosis" in html


def test_the_api_creates_and_reads_a_case(client: FlaskClient, synthetic) -> None:
    response = post_case(client, synthetic, url="/api/v1/cases", reference="API-1", model="lenet")
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/cases/{body['id']}"
    assert body["reference"] == "API-1"
    assert len(body["images"]) == 3
    assert body["status"] in ("benign", "malignant", "uncertain")
    assert "class" in body
    assert set(body["evidence"]) >= {"probabilities", "excluded", "review_fields", "votes"}
    image = body["images"][0]
    assert {"class", "status", "probabilities", "error"} <= set(image)
    again = client.get(response.headers["Location"])
    assert again.status_code == 200
    assert again.get_json()["images"] == body["images"]
    added = post_case(client, synthetic[:1], url=f"/api/v1/cases/{body['id']}/fields")
    assert added.status_code == 201
    assert len(added.get_json()["images"]) == 4


@pytest.mark.parametrize("model", ["lenet", "cell_lenet"])
def test_a_cases_photographs_keep_their_order_with_each_refusal_in_its_place(
    app: Flask, client: FlaskClient, images: ImageFactory, model: str
) -> None:
    # Enough photographs for several of the image processes' batches, each recorded as its
    # batch is answered; one too large and one unreadable among them.
    app.config["MAX_CONTENT_LENGTH"] = 200 * 1024
    files = [
        (f"field-{i}.jpg", images.make(size=(224, 224), seed=i, fmt="JPEG")) for i in range(20)
    ]
    files[5] = ("big.png", images.make(size=(600, 600), seed=5, fmt="PNG"))
    files[13] = ("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg")
    assert len(files[5][1]) > 200 * 1024
    response = post_case(client, files, url="/api/v1/cases", reference="ORDER", model=model)
    assert response.status_code == 201
    shown = response.get_json()["images"]
    assert [i["position"] for i in shown] == list(range(1, 21))
    assert [i["filename"] for i in shown] == [name for name, _ in files]
    assert shown[5]["error"]["code"] == "payload_too_large"
    assert shown[13]["error"]["code"] == "undecodable_image"
    assert all(i["error"] is None for n, i in enumerate(shown) if n not in (5, 13))


@pytest.mark.parametrize(
    ("files", "form", "status", "code"),
    [
        ([], {"reference": "A"}, 422, "invalid_case"),
        ([("a.png", b"x")], {"reference": ""}, 422, "invalid_case"),
        ([("a.png", b"x")], {"reference": "A", "model": "nope"}, 400, "unknown_model"),
    ],
)
def test_the_api_refuses_bad_cases_with_json(
    app: Flask, client: FlaskClient, files, form, status: int, code: str
) -> None:
    response = post_case(client, files, url="/api/v1/cases", **form)
    assert response.status_code == status
    assert response.is_json
    assert response.get_json()["error"]["code"] == code
    assert client.get("/api/v1/cases/unknown").get_json()["error"]["code"] == "case_not_found"
    assert count(app, Case) == 0


@pytest.mark.data
def test_the_cell_gallery_shows_the_leukocytes_of_every_field_grouped_by_verdict(
    app: Flask, client: FlaskClient, token: str, smear_images
) -> None:
    files = [(p.name, p.read_bytes()) for p in smear_images["pre_b"][:2]]
    url = post_case(client, files, reference="S-16", csrf_token=token).headers["Location"]
    html = client.get(url).get_data(as_text=True)
    assert 'id="cell-gallery"' in html
    crops = re.findall(r'src="(/cases/[^"]+/cells/\d+\.jpg)"', html)
    assert crops, "no cell in two real smears"
    image = client.get(crops[0])
    assert image.status_code == 200
    assert image.data[:2] == b"\xff\xd8"
    assert re.search(r'alt="Cell 1 of field [12]"', html)
    # A crop of another case is not served through this one.
    other = post_case(client, files[:1], reference="S-17", csrf_token=token).headers["Location"]
    foreign_id = crops[-1].rsplit("/", 1)[1]
    assert client.get(f"{other}/cells/{foreign_id}").status_code == 404


def test_the_history_is_searched_by_reference_verdict_review_and_date_in_pages(
    app: Flask, client: FlaskClient, token: str, synthetic
) -> None:
    from app.records import cases as records

    for i in range(3):
        post_case(client, synthetic[:1], reference=f"HIST-{i}", csrf_token=token)
    post_case(client, [("x.txt", b"no")], reference="OTHER-1", csrf_token=token)
    found = client.get("/api/v1/cases?reference=hist").get_json()
    assert found["total"] == 3
    assert [c["reference"] for c in found["cases"]] == [
        "HIST-2",
        "HIST-1",
        "HIST-0",
    ]
    other = client.get("/api/v1/cases?reference=OTHER").get_json()["cases"][0]
    assert other["status"] == "uncertain"
    assert other["review_state"] == "none"
    client.post(
        f"/api/v1/cases/{other['id']}/review",
        json={"decision": "override", "class": "benign", "comment": "redone", "sign_off": True},
    )
    signed = client.get("/api/v1/cases?review=signed_off").get_json()
    assert [c["reference"] for c in signed["cases"]] == ["OTHER-1"]
    today = client.get("/api/v1/cases").get_json()["cases"][0]["created_at"][:10]
    assert client.get(f"/api/v1/cases?from={today}&to={today}").get_json()["total"] == 4
    assert client.get("/api/v1/cases?to=2000-01-01").get_json()["total"] == 0
    assert client.get("/api/v1/cases?status=benign&reference=OTHER").get_json()["total"] == 0
    bad = client.get("/api/v1/cases?from=yesterday")
    assert bad.status_code == 422
    assert bad.get_json()["error"]["code"] == "invalid_case"
    assert client.get("/cases/?status=nonsense").status_code == 422

    # Pages: 25 a page, newest first, the page links keep the search.
    per_page = records.CaseQuery().per_page
    assert per_page == 25
    page = client.get("/cases/?reference=HIST").get_data(as_text=True)
    assert "3 cases." in page
    assert 'rel="next"' not in page
    with app.app_context():
        query = records.CaseQuery(reference="HIST", per_page=2, page=2)
        hits, total = records.search_cases(db(), query)
        assert total == 3
        assert [c.reference for c in hits] == ["HIST-0"]


def test_the_api_reviews_and_deletes_a_case(client: FlaskClient, synthetic) -> None:
    created = post_case(client, synthetic[:1], url="/api/v1/cases", reference="API-2").get_json()
    url = f"/api/v1/cases/{created['id']}"
    refused = client.post(url + "/review", json={"decision": "maybe"})
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "invalid_case"
    reviewed = client.post(
        url + "/review", json={"decision": "override", "class": "pre_b", "sign_off": True}
    )
    assert reviewed.status_code == 201
    body = reviewed.get_json()
    assert body["signed_off"]
    assert body["review"]["class_id"] == "pre_b"
    locked = client.post(url + "/review", json={"decision": "override", "class": "benign"})
    assert locked.status_code == 409
    assert locked.get_json()["error"]["code"] == "case_signed_off"
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404


def test_predict_takes_several_images_and_answers_a_list(client: FlaskClient, synthetic) -> None:
    body, content_type = multipart(
        {"model": "lenet"},
        [("image", synthetic[0]), ("image", ("b.txt", b"nope")), ("image", synthetic[1])],
    )
    response = client.post("/api/v1/predict", data=body, content_type=content_type)
    assert response.status_code == 200
    answers = response.get_json()
    assert isinstance(answers, list)
    assert len(answers) == 3
    assert answers[1]["error"]["code"] == "unsupported_media_type"
    assert answers[0]["status"] in ("benign", "malignant", "uncertain", "out_of_distribution")
    assert set(answers[2]["probabilities"]) == {"benign", "early_pre_b", "pre_b", "pro_b"}


def test_the_pdf_report_holds_the_record(client: FlaskClient, token: str, synthetic) -> None:
    import io

    from pypdf import PdfReader

    files = [*synthetic[:2], ("bad.txt", b"no")]
    url = post_case(client, files, reference="PDF-1", note="right arm", csrf_token=token).headers[
        "Location"
    ]
    signed = client.post(
        url + "/reviews",
        data={
            "decision": "override",
            "class_id": "pre_b",
            "comment": "blasts 40%",
            "sign_off": "1",
            "microscope": "1",
            "microscope_confirmation": "blasts at x100 oil immersion",
            "csrf_token": token,
        },
    )
    assert signed.headers["Location"] == url + "#review"
    case = client.get(url, headers={"Accept": "application/json"}).get_json()
    for response in (
        client.get(url + "/report.pdf"),
        client.get(f"/api/v1/cases/{case['id']}/report.pdf"),
    ):
        assert response.status_code == 200
        assert response.mimetype == "application/pdf"
        assert 'filename="case-PDF-1.pdf"' in response.headers["Content-Disposition"]
        text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
        text = " ".join(text.split())
        assert "Case reference PDF-1" in text
        assert "right arm" in text
        assert f"LeNet-5, version {case['model']['version']}" in text
        assert case["review"]["label"] in text
        assert "blasts 40%" in text
        assert "not a diagnosis" in text
        for image in case["images"]:
            assert image["sha256"] in text.replace(" ", "") or image["sha256"] in text
        assert "Not analysed" in text
        assert "bad.txt" in text


def test_uploads_to_one_case_at_the_same_time_all_land(app: Flask, synthetic) -> None:
    import threading

    client = admin_client(app)
    created = post_case(client, synthetic[:1], url="/api/v1/cases", reference="RACE-1").get_json()
    statuses: list[int] = []

    def add() -> None:
        response = post_case(
            admin_client(app), synthetic[1:2], url=f"/api/v1/cases/{created['id']}/fields"
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 6  # each upload lands after the others, none is lost
    images = client.get(f"/api/v1/cases/{created['id']}").get_json()["images"]
    positions = [i["position"] for i in images]
    assert positions == list(range(1, len(images) + 1))
    assert len(images) == 1 + statuses.count(201)


def test_an_upload_that_stops_part_way_is_marked_incomplete(
    client: FlaskClient, token: str, synthetic
) -> None:
    json_headers = {"Accept": "application/json"}
    created = post_case(
        client, [], headers=json_headers, reference="CUT-1", files_follow="3", csrf_token=token
    ).get_json()
    post_case(
        client, synthetic[:1], url=created["fields_url"], headers=json_headers, csrf_token=token
    )
    page = client.get(created["url"]).get_data(as_text=True)
    assert 'id="incomplete"' in page
    assert "1 of 3 photographs arrived" in page
    case = client.get(created["url"], headers=json_headers).get_json()
    assert case["upload"] == {"expected": 3, "received": 1, "complete": False}
    post_case(
        client, synthetic[1:3], url=created["fields_url"], headers=json_headers, csrf_token=token
    )
    assert 'id="incomplete"' not in client.get(created["url"]).get_data(as_text=True)
    bad = post_case(
        client, [], headers=json_headers, reference="CUT-2", files_follow="0", csrf_token=token
    )
    assert bad.status_code == 422


def test_photographs_are_decoded_in_groups_that_cost_no_more_than_one_at_the_limit(
    images,
) -> None:
    from werkzeug.datastructures import FileStorage

    from app.web.uploads import decoding_groups

    def upload(data: bytes) -> FileStorage:
        return FileStorage(io.BytesIO(data), filename="f")

    def blank(size: tuple[int, int], fmt: str) -> FileStorage:
        return upload(ImageFactory.encode(Image.new("RGB", size), fmt))

    small = [upload(images.make(size=(224, 224), fmt="PNG")) for _ in range(70)]
    assert [len(g) for g in decoding_groups(small)] == [64, 6]  # one model pass each
    assert all(f.stream.tell() == 0 for f in small)  # the headers were read, the files not
    twelve_mp = [blank((4000, 3000), "PNG") for _ in range(5)]
    assert [len(g) for g in decoding_groups(twelve_mp)] == [2, 2, 1]
    # A WebP costs twice as much to decode; a big JPEG is decoded at half its size.
    assert [len(g) for g in decoding_groups([blank((4000, 3000), "WEBP")] * 3)] == [1, 1, 1]
    assert [len(g) for g in decoding_groups([blank((6000, 4000), "JPEG")] * 9)] == [4, 4, 1]
    # A header that cannot be read is counted as a photograph at the limit.
    assert [len(g) for g in decoding_groups([upload(b"not an image")] * 2)] == [1, 1]


def test_sign_off_waits_until_this_reviewer_has_opened_the_flagged_fields(
    app: Flask, client: FlaskClient, as_role, token: str
) -> None:
    url = stored_case(app, "LOOK-1", ["benign", "pre_b", "benign", "pre_b"])
    case = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert case["status"] == "malignant"
    assert case["evidence"]["review_fields"] == [2, 4]
    page = client.get(url).get_data(as_text=True)
    assert 'id="review-flagged"' in page
    assert "2 of 2 still to open" in page
    assert 'id="flagged-1"' not in page  # a benign field is not asked for
    sign_off = {"decision": "agree", "sign_off": "1", "comment": "kept", "csrf_token": token}

    # Another reviewer's openings are theirs, not this reviewer's.
    clinician = as_role("clinician")
    open_fields(clinician, url, [2, 4])
    refused = refused_review(client, url, sign_off)
    assert "Open fields 2, 4 before signing off" in refused
    assert ">kept</textarea>" in refused
    assert 'id="sign-off" checked' in refused
    # An unsigned review asks for nothing.
    saved = client.post(url + "/reviews", data={"decision": "agree", "csrf_token": token})
    assert saved.status_code == 303

    open_fields(client, url, [2, 2])  # opening a field again fails nothing
    page = refused_review(client, url, sign_off)
    assert "Open field 4 before signing off" in page
    assert re.search(r'id="flagged-2" class="opened">.*?opened</li>', page, re.S)
    assert re.search(r'id="flagged-4" class="to-open">.*?still to open', page, re.S)
    open_fields(client, url, [4])
    assert "You have opened them all" in client.get(url).get_data(as_text=True)
    signed = client.post(url + "/reviews", data=sign_off)
    assert signed.status_code == 303
    assert signed.headers["Location"] == url + "#review"
    body = client.get(url, headers={"Accept": "application/json"}).get_json()
    assert body["signed_off"]
    assert body["review"]["decision"] == "agree"
    assert body["review"]["class_id"] == "pre_b"
    assert body["review"]["microscope_confirmation"] is None
    assert count(app, FieldView) == 4  # two fields, two reviewers, each once
    assert audit_detail(app, url, "case_signed_off")["flagged_fields"] == [2, 4]


def test_a_microscope_confirmation_stands_in_for_opening_the_fields(
    app: Flask, client: FlaskClient, token: str
) -> None:
    url = stored_case(app, "LOOK-2", ["benign", "pre_b"])
    form = {"decision": "agree", "sign_off": "1", "csrf_token": token}
    short = refused_review(
        client, url, {**form, "microscope": "1", "microscope_confirmation": "ok"}
    )
    assert "at least 10 characters" in short
    words = "blasts seen at x100, fine chromatin"
    unticked = refused_review(client, url, {**form, "microscope_confirmation": words})
    assert "Tick" in unticked
    assert words in unticked  # the words are kept for the next try
    signed = client.post(
        url + "/reviews", data={**form, "microscope": "1", "microscope_confirmation": words}
    )
    assert signed.status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert f"Reviewed at the microscope: {words}" in page
    review = client.get(url, headers={"Accept": "application/json"}).get_json()["review"]
    assert review["microscope_confirmation"] == words
    assert review["signed_off"]
    assert audit_detail(app, url, "case_signed_off")["microscope_confirmation"] == words
    assert count(app, FieldView) == 0


def test_reviewer_findings_beyond_the_four_classes(
    app: Flask, client: FlaskClient, token: str
) -> None:
    url = stored_case(app, "FIND-1", ["benign", "benign"])
    api = f"/api/v1/cases/{url.rsplit('/', 1)[1]}/review"
    bare = client.post(api, json={"decision": "override", "class": "other_finding"})
    assert bare.status_code == 422
    assert "Say what the other finding is" in bare.get_json()["error"]["message"]
    stray = client.post(api, json={"decision": "override", "class": "refer_flow", "finding": "x"})
    assert stray.status_code == 422
    assert stray.get_json()["error"]["code"] == "invalid_case"
    unknown = client.post(api, json={"decision": "override", "class": "leukaemia"})
    assert unknown.status_code == 422
    for finding in ("blasts_unassessable", "refer_flow"):
        assert client.post(api, json={"decision": "override", "class": finding}).status_code == 201
    other = client.post(
        api,
        json={"decision": "override", "class": "other_finding", "finding": "reactive lymphocytes"},
    )
    assert other.status_code == 201
    last = other.get_json()["reviews"][-1]
    assert (last["kind"], last["class_id"], last["finding"]) == (
        "finding",
        "other_finding",
        "reactive lymphocytes",
    )
    assert last["label"] == "Overrode the model: No B-ALL: other finding (reactive lymphocytes)"
    # The page form offers them too.
    page = client.get(url).get_data(as_text=True)
    assert '<option value="non_diagnostic">' in page
    assert 'id="finding"' in page
    saved = client.post(
        url + "/reviews",
        data={"decision": "override", "class_id": "non_diagnostic", "csrf_token": token},
    )
    assert saved.status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert "Overrode the model: Non-diagnostic: insufficient or poor images" in page
    reviews = client.get(url, headers={"Accept": "application/json"}).get_json()["reviews"]
    assert [r["class_id"] for r in reviews] == [
        "blasts_unassessable",
        "refer_flow",
        "other_finding",
        "non_diagnostic",
    ]


def test_an_override_naming_the_models_own_class_is_recorded_as_agreement(
    app: Flask, client: FlaskClient, token: str
) -> None:
    url = stored_case(app, "SAME-1", ["pre_b"])
    response = client.post(
        url + "/reviews", data={"decision": "override", "class_id": "pre_b", "csrf_token": token}
    )
    assert response.status_code == 303
    other = client.post(
        url + "/reviews", data={"decision": "override", "class_id": "pro_b", "csrf_token": token}
    )
    assert other.status_code == 303
    reviews = client.get(url, headers={"Accept": "application/json"}).get_json()["reviews"]
    assert [(r["decision"], r["class_id"]) for r in reviews] == [
        ("agree", "pre_b"),
        ("override", "pro_b"),
    ]
    assert audit_detail(app, url, "case_reviewed")["decision"] == "override"


def test_an_incomplete_case_is_signed_off_only_with_an_acknowledgement(
    app: Flask, client: FlaskClient, token: str
) -> None:
    url = stored_case(app, "CUT-3", ["benign", "benign"], expected=3)
    stored_case(app, "WHOLE-1", ["benign"])
    form = {"decision": "agree", "sign_off": "1", "csrf_token": token}
    page = refused_review(client, url, form)
    assert "2 of 3 photographs arrived" in page
    assert 'id="acknowledge-incomplete"' in page
    signed = client.post(url + "/reviews", data={**form, "acknowledge_incomplete": "1"})
    assert signed.status_code == 303
    review = client.get(url, headers={"Accept": "application/json"}).get_json()["review"]
    assert review["acknowledged_incomplete"]
    assert review["signed_off"]
    detail = audit_detail(app, url, "case_signed_off")
    assert detail["acknowledged_incomplete"] == {"expected": 3, "received": 2}

    listing = client.get("/cases/").get_data(as_text=True)
    public_id = url.rsplit("/", 1)[1]
    assert f'id="incomplete-{public_id}"' in listing
    assert "2 of 3 arrived" in listing
    assert listing.count('class="incomplete"') == 1
    cases = {c["reference"]: c for c in client.get("/api/v1/cases").get_json()["cases"]}
    assert cases["CUT-3"]["upload"] == {"expected": 3, "received": 2, "complete": False}
    assert cases["WHOLE-1"]["upload"]["complete"] is True


def test_the_api_review_follows_the_same_rules(app: Flask, client: FlaskClient) -> None:
    flagged = stored_case(app, "API-LOOK", ["pre_b", "benign"])
    api = f"/api/v1/cases/{flagged.rsplit('/', 1)[1]}/review"
    refused = client.post(api, json={"decision": "agree", "sign_off": True})
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["code"] == "fields_not_opened"
    assert "Open field 1 before" in error["message"]
    confirmed = client.post(
        api,
        data={
            "decision": "agree",
            "sign_off": "true",
            "microscope_confirmation": "blasts 30%, confirmed at the scope",
        },
    )
    assert confirmed.status_code == 201
    assert confirmed.get_json()["review"]["microscope_confirmation"]

    # The token's user opened the field in the pages: that counts for the API too.
    opened = stored_case(app, "API-OPEN", ["pre_b"])
    open_fields(client, opened, [1])
    api = f"/api/v1/cases/{opened.rsplit('/', 1)[1]}/review"
    assert client.post(api, json={"decision": "agree", "sign_off": True}).status_code == 201

    cut = stored_case(app, "API-CUT", ["benign"], expected=2)
    api = f"/api/v1/cases/{cut.rsplit('/', 1)[1]}/review"
    incomplete = client.post(api, json={"decision": "agree", "sign_off": True})
    assert incomplete.status_code == 422
    assert incomplete.get_json()["error"]["code"] == "case_incomplete"
    acknowledged = client.post(
        api, json={"decision": "agree", "sign_off": True, "acknowledge_incomplete": True}
    )
    assert acknowledged.status_code == 201
    assert acknowledged.get_json()["review"]["acknowledged_incomplete"] is True


def test_the_openapi_document_describes_the_review_and_the_list(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    body = document["paths"]["/api/v1/cases/{id}/review"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    assert "application/x-www-form-urlencoded" in body
    assert {"finding", "microscope_confirmation", "acknowledge_incomplete"} <= set(
        schema["properties"]
    )
    assert "other_finding" in schema["properties"]["class"]["enum"]
    schemas = document["components"]["schemas"]
    assert "upload" in schemas["CaseSummary"]["properties"]
    assert "microscope_confirmation" in schemas["Review"]["properties"]
