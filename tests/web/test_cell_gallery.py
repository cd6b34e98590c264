"""A cell model's case in the pages and the API: its cells stored with their classes, the
gallery by class with the differential, a reviewer's reclassification (counts, audit, who
may, a signed-off case), and the single-image result's legend in the outlines' colours."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from openapi_schema_validator import OAS31Validator
from PIL import Image
from sqlalchemy import select

from app import create_app
from app.core.cells.crops import CROP_PX
from app.core.cells.explain import CLASS_COLOURS, UNCERTAIN_COLOUR
from app.core.classes import DISPLAY_NAMES
from app.core.service import InferenceService
from app.records.schema import AuditEvent, Case, CellCrop
from app.web.cases.cell_gallery import cell_image_urls
from app.web.docs.openapi import openapi_document
from tests.support.accounts import signed_in, token_for, with_token
from tests.support.cell_cases import CELL_MODEL, cell_models_folder, write_cell_case
from tests.support.images import ImageFactory
from tests.support.models import ROOT
from tests.support.server import multipart

# Two leukocytes in one synthetic field, one in another.
FIELDS = [[(0.3, 0.3, 1.6), (0.7, 0.6, 1.3)], [(0.5, 0.5, 1.5)]]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = cell_models_folder(tmp_path_factory.mktemp("cell-models"))
    if folder is None:
        pytest.skip("no committed models to serve beside the cell model")
    return folder


@pytest.fixture(scope="module")
def inference_service(models_dir: Path) -> InferenceService:
    """The committed LeNet (the default) and an untrained cell model."""
    return InferenceService(models_dir).load()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(
    request: pytest.FixtureRequest, app_config: dict[str, object]
) -> dict[str, object]:
    if request.param == "sqlite":
        return app_config
    return {**app_config, "DATABASE_URL": request.getfixturevalue("migrated_postgres_url")}


def _check(schema_name: str, instance: object) -> None:
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    OAS31Validator(schema).validate(instance)


def _token(client: FlaskClient, url: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert match, f"no form on {url}"
    return match.group(1)


def _events(app: Flask, action: str) -> list[AuditEvent]:
    with app.extensions["records"].sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def _cells(app: Flask) -> list[CellCrop]:
    with app.extensions["records"].sessions() as session:
        return list(session.scalars(select(CellCrop).order_by(CellCrop.id)))


def _groups(html: str) -> dict[str, str]:
    """The gallery's class groups in page order: class id -> its heading's count."""
    found = re.findall(
        r'id="group-(\w+)-title">.*?<span class="muted group-count">([^<]+)</span>', html, re.S
    )
    return dict(found)


def _differential(html: str) -> dict[str, tuple[str, str]]:
    """The differential table: class id -> (model's count, count after review), as shown."""
    rows = re.findall(
        r'<tr id="differential-(\w+)".*?<td class="count-model">(.*?)</td>\s*'
        r'<td class="count-reviewed">(.*?)</td>',
        html,
        re.S,
    )
    text = {c: tuple(re.sub(r"<[^>]+>", "", part).strip() for part in parts) for c, *parts in rows}
    return text  # type: ignore[return-value]


def test_a_cell_models_case_stores_the_cells_it_read_and_answers_them_in_json(
    app: Flask, client: FlaskClient, inference_service: InferenceService
) -> None:
    photographs = [
        ImageFactory.encode(ImageFactory.cell_field(cells, seed=i))
        for i, cells in enumerate(FIELDS)
    ]
    body, content_type = multipart(
        {"reference": "CELLS-1", "model": CELL_MODEL},
        [("images", (f"{i}.png", data)) for i, data in enumerate(photographs)],
    )
    created = client.post("/api/v1/cases", data=body, content_type=content_type)
    assert created.status_code == 201, created.get_data(as_text=True)
    case = created.get_json()
    _check("Case", case)

    # What was stored is what the model answered for each photograph, cell by cell.
    for image, data in zip(case["images"], photographs, strict=True):
        alone = inference_service.classify(data, CELL_MODEL)
        assert alone.cells is not None
        assert [c["box"] for c in image["cells"]] == [list(c.box) for c in alone.cells.cells]
        assert [c["class"] for c in image["cells"]] == [c.class_id for c in alone.cells.cells]
        assert [c["status"] for c in image["cells"]] == [c.status for c in alone.cells.cells]
        assert image["cells"][0]["probabilities"] == pytest.approx(
            alone.cells.cells[0].probabilities, abs=1e-5
        )
        assert image["cell_counts"]["model"] == alone.cells.counts
        assert image["cell_counts"]["reviewed"] == alone.cells.counts
    assert case["cell_counts"]["cells"] == 3
    assert case["cell_counts"]["reviewed_cells"] == 0
    assert sum(case["evidence"]["cell_counts"].values()) == 3  # the case rule's cells

    # The gallery's crop is the model's own 22-micrometre square, at the model's pixels.
    crop = client.get(case["images"][0]["cells"][0]["image_url"])
    assert crop.status_code == 200
    assert crop.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(crop.data)).size == (CROP_PX, CROP_PX)
    assert len(_cells(app)) == 3

    # The field view outlines the cells read and shows the whole photograph at full size.
    field = client.get(f"/cases/{case['id']}/fields/1").get_data(as_text=True)
    assert 'id="cell-legend"' in field
    full = client.get(f"/cases/{case['id']}/fields/1/field.jpg")
    assert Image.open(io.BytesIO(full.data)).size == (224, 224)


def test_a_field_models_case_keeps_its_gallery_of_cells_without_classes(
    client: FlaskClient, images: ImageFactory
) -> None:
    files = [("images", (f"{i}.png", images.make(size=(160, 160), seed=i))) for i in range(2)]
    body, content_type = multipart({"reference": "FIELDS-1", "model": "lenet"}, files)
    case = client.post("/api/v1/cases", data=body, content_type=content_type).get_json()
    _check("Case", case)
    assert case["cell_counts"] is None
    assert all("cells" not in image for image in case["images"])
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert 'id="differential"' not in html
    assert 'id="cells-link"' not in html
    gallery = client.get(f"/cases/{case['id']}/cells").get_data(as_text=True)
    assert 'id="no-classes"' in gallery
    assert 'class="cell-card' not in gallery


def test_the_gallery_groups_the_cells_by_class_with_counts_and_percentages(
    app: Flask, client: FlaskClient
) -> None:
    public_id = write_cell_case(app, "GAL-1", [["pre_b", "pre_b", "benign"], ["pro_b", "pre_b"]])
    html = client.get(f"/cases/{public_id}/cells").get_data(as_text=True)
    assert _groups(html) == {
        "benign": "1 cell (20%)",
        "pre_b": "3 cells (60%)",
        "pro_b": "1 cell (20%)",
    }
    assert list(_groups(html)) == ["benign", "pre_b", "pro_b"]  # the classes' fixed order
    assert _differential(html)["pre_b"] == ("3 (60%)", "3 (60%)")
    assert _differential(html)["early_pre_b"] == ("0 (0%)", "0 (0%)")
    # Each cell says the model's class and its probability of it.
    assert html.count(f"Model: {DISPLAY_NAMES['pre_b']} 80.0%") == 3
    assert "Field 2, cell 1" in html
    # The case page shows the differential and leads to the gallery.
    page = client.get(f"/cases/{public_id}").get_data(as_text=True)
    assert _differential(page)["benign"] == ("1 (20%)", "1 (20%)")
    assert f'href="/cases/{public_id}/cells"' in page
    assert 'id="cell-gallery"' not in page


def test_a_reviewer_reclassifies_a_cell_the_counts_follow_and_the_trail_says_so(
    any_database: dict[str, object], inference_service: InferenceService
) -> None:
    app = create_app(any_database, inference=inference_service)
    reviewer = with_token(signed_in(app.test_client(), "clinician"), token_for(app, "clinician"))
    public_id = write_cell_case(app, "REC-1", [["pre_b", "pre_b", "benign"], ["pro_b"]])
    gallery = f"/cases/{public_id}/cells"
    cells = _cells(app)
    first = cells[0]  # field 1, cell 1: Pre-B

    answer = reviewer.post(
        f"{gallery}/{first.id}/class",
        data={"class_id": "pro_b", "csrf_token": _token(reviewer, gallery)},
    )
    assert answer.status_code == 303
    # Back at the next cell of its old class, where the review goes on.
    assert answer.headers["Location"] == f"{gallery}#cell-{cells[1].id}"
    html = reviewer.get(gallery).get_data(as_text=True)
    assert "Field 1, cell 1: Pre-B ALL → Pro-B ALL. Pro-B ALL now 2 of 4 cells." in html
    assert _groups(html) == {
        "benign": "1 cell (25%)",
        "pre_b": "1 cell (25%)",
        "pro_b": "2 cells (50%)",
    }
    assert _differential(html)["pre_b"] == ("2 (50%)", "1 (25%) changed")
    assert _differential(html)["pro_b"] == ("1 (25%)", "2 (50%) changed")
    assert "Reclassified by clinician" in html

    case = reviewer.get(f"/api/v1/cases/{public_id}").get_json()
    _check("Case", case)
    assert case["cell_counts"]["model"]["pre_b"] == 2
    assert case["cell_counts"]["reviewed"]["pre_b"] == 1
    assert case["cell_counts"]["reviewed"]["pro_b"] == 2
    assert case["cell_counts"]["reviewed_cells"] == 1
    assert case["images"][0]["cell_counts"]["reviewed"]["pro_b"] == 1
    assert case["images"][0]["cells"][0]["reviewed_class"] == "pro_b"
    assert case["images"][0]["cells"][0]["reviewed_by"] == "clinician"
    assert case["evidence"]["cell_counts"]["pro_b"] == 2  # the case rule reads the review

    events = _events(app, "cell_reclassified")
    assert len(events) == 1
    assert events[0].actor == "clinician"
    assert events[0].object_id == public_id
    assert events[0].detail == {
        "field": 1,
        "cell": 1,
        "cell_id": first.id,
        "model_class": "pre_b",
        "from": "pre_b",
        "to": "pro_b",
    }

    # The same class again changes nothing and writes nothing; the API reclassifies too.
    again = reviewer.post(
        f"{gallery}/{first.id}/class",
        data={"class_id": "pro_b", "csrf_token": _token(reviewer, gallery)},
    )
    assert again.status_code == 303
    assert len(_events(app, "cell_reclassified")) == 1
    back = reviewer.post(
        f"/api/v1/cases/{public_id}/cells", json={"cell": first.id, "class": "pre_b"}
    )
    assert back.status_code == 200
    assert back.get_json()["cell_counts"]["reviewed"]["pre_b"] == 2
    assert [e.detail["to"] for e in _events(app, "cell_reclassified")] == ["pro_b", "pre_b"]
    app.extensions["records"].engine.dispose()


def test_a_reader_cannot_reclassify_a_cell(app: Flask, as_role) -> None:
    public_id = write_cell_case(app, "READ-1", [["pre_b", "benign"]])
    viewer = as_role("viewer")
    gallery = f"/cases/{public_id}/cells"
    html = viewer.get(gallery).get_data(as_text=True)
    assert 'class="reclassify"' not in html
    assert 'id="cells-read-only"' in html
    cell = _cells(app)[0]
    token = _token(viewer, gallery)  # the sign-out form's
    page = viewer.post(
        f"{gallery}/{cell.id}/class", data={"class_id": "pro_b", "csrf_token": token}
    )
    assert page.status_code == 403
    api = viewer.post(f"/api/v1/cases/{public_id}/cells", json={"cell": cell.id, "class": "pro_b"})
    assert api.status_code == 403
    assert _cells(app)[0].reviewed_class is None
    assert _events(app, "cell_reclassified") == []


def test_a_signed_off_case_refuses_reclassification(app: Flask, client: FlaskClient) -> None:
    public_id = write_cell_case(app, "SIGNED-1", [["pre_b", "benign"]])
    gallery = f"/cases/{public_id}/cells"
    token = _token(client, gallery)
    signed = client.post(
        f"/api/v1/cases/{public_id}/review",
        json={
            "decision": "agree",
            "sign_off": True,
            "microscope_confirmation": "blasts seen at x100 oil",
        },
    )
    assert signed.status_code == 201, signed.get_json()
    cell = _cells(app)[0]

    api = client.post(f"/api/v1/cases/{public_id}/cells", json={"cell": cell.id, "class": "pro_b"})
    assert api.status_code == 409
    assert api.get_json()["error"]["code"] == "case_signed_off"
    # The page's form is answered as every refused form is: back to its page, which says why.
    page = client.post(
        f"{gallery}/{cell.id}/class", data={"class_id": "pro_b", "csrf_token": token}
    )
    assert page.status_code == 303
    assert page.headers["Location"] == f"{gallery}#cells-error"
    html = client.get(gallery).get_data(as_text=True)
    assert 'id="cells-error"' in html
    assert "signed off" in html
    assert 'class="reclassify"' not in html
    assert 'id="cells-signed"' in html
    assert _cells(app)[0].reviewed_class is None
    assert _events(app, "cell_reclassified") == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"cell": 0, "class": "pro_b"}, 404, "cell_not_found"),
        ({"cell": 2**70, "class": "pro_b"}, 404, "cell_not_found"),
        ({"cell": "first", "class": "pro_b"}, 404, "cell_not_found"),
        ({"class": "pro_b"}, 404, "cell_not_found"),
        ({"cell": "own", "class": "blast"}, 422, "invalid_case"),
        ({"cell": "own"}, 422, "invalid_case"),
        ({"cell": "other", "class": "pro_b"}, 404, "cell_not_found"),
    ],
)
def test_a_bad_reclassification_is_refused_with_its_reason(
    app: Flask, client: FlaskClient, body: dict[str, Any], status: int, code: str
) -> None:
    public_id = write_cell_case(app, "BAD-1", [["pre_b"]])
    write_cell_case(app, "BAD-2", [["benign"]])
    own, other = (c.id for c in _cells(app))
    ids, cell = {"own": own, "other": other}, body.get("cell")
    body = {**body, "cell": ids.get(str(cell), cell)}  # a name stands for its cell's id
    body = {k: v for k, v in body.items() if v is not None}
    answer = client.post(f"/api/v1/cases/{public_id}/cells", json=body)
    assert answer.status_code == status
    assert answer.get_json()["error"]["code"] == code
    assert all(c.reviewed_class is None for c in _cells(app))


def test_the_result_page_lists_the_cells_by_class_in_the_colours_of_their_outlines(
    client: FlaskClient, csrf_token: str
) -> None:
    image = ImageFactory.encode(ImageFactory.cell_field(FIELDS[0]))
    form = {"model": CELL_MODEL, "csrf_token": csrf_token}
    body, content_type = multipart(form, {"image": ("smear.png", image)})
    answer = client.post("/analyze", data=body, content_type=content_type)
    assert answer.status_code == 303
    html = client.get(answer.headers["Location"]).get_data(as_text=True)
    legend = re.findall(
        r'<li data-class="(\w+)"><span class="swatch cls-\1"[^>]*></span>'
        r"[^:]+:&nbsp;<strong>(\d+)</strong>",
        html,
    )
    assert [c for c, _ in legend][:4] == ["benign", "early_pre_b", "pre_b", "pro_b"]
    assert sum(int(n) for c, n in legend if c != "uncertain") == 2
    assert re.search(r'<dd id="cell-count">2\b', html)
    # The legend's swatches are the colours the outlines are drawn in.
    css = (ROOT / "static" / "style.css").read_text()
    colours = dict(re.findall(r"\.cls-(\w+) \{ --class-colour: rgb\((\d+, \d+, \d+)\); \}", css))
    drawn = {**CLASS_COLOURS, "uncertain": UNCERTAIN_COLOUR}
    assert {c: tuple(int(v) for v in rgb.split(", ")) for c, rgb in colours.items()} == drawn


@pytest.mark.parametrize("public_id", ["Ab3dEf9876543210xy", "plain-id"])
def test_a_cells_image_url_is_the_one_url_for_builds(app: Flask, public_id: str) -> None:
    # Built once a case, not once a cell; a case id holding the marker's digits too.
    with app.test_request_context():
        urls = cell_image_urls(Case(public_id=public_id))
        for crop_id in (1, 42, 9_876_543_210, 2**31 - 1):
            assert urls(crop_id) == url_for("cases.cell", public_id=public_id, crop_id=crop_id)
