"""The audit trail: each action writes exactly one event; nothing can change or remove one;
the admin page filters it and its CSV export reads back."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.records.audit import record
from app.records.schema import AuditEvent
from tests.support.accounts import PASSWORDS, admin_client, app_users, form_token
from tests.support.server import multipart


def events(app: Flask) -> list[AuditEvent]:
    with app.extensions["records"].sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def only_new(app: Flask, action: Callable[[], object]) -> list[AuditEvent]:
    """The events ``action`` wrote."""
    before = len(events(app))
    action()
    return events(app)[before:]


def one(app: Flask, action: Callable[[], object], name: str, actor: str | None = "admin"):
    written = only_new(app, action)
    assert [e.action for e in written] == [name], [e.action for e in written]
    event = written[0]
    assert event.actor == actor
    assert event.address == "127.0.0.1"
    return event


def api_case(client: FlaskClient, images, n: int = 2, **form: str) -> dict[str, Any]:
    files = [("images", (f"f{i}.png", images.make(size=(160, 160), seed=i))) for i in range(n)]
    body, content_type = multipart({"reference": "AUD-1", **form}, files)
    response = client.post("/api/v1/cases", data=body, content_type=content_type)
    assert response.status_code == 201
    return response.get_json()


def test_each_case_action_writes_exactly_one_event(app: Flask, client: FlaskClient, images) -> None:
    created: dict[str, Any] = {}
    event = one(app, lambda: created.update(api_case(client, images)), "case_created")
    case_id = created["id"]
    assert event.object_type == "case"
    assert event.object_id == case_id
    assert event.detail == {"fields": 2, "model": "lenet"}

    one(app, lambda: client.get(f"/api/v1/cases/{case_id}"), "case_viewed")
    one(app, lambda: client.get(f"/cases/{case_id}"), "case_viewed")
    pdf = one(app, lambda: client.get(f"/cases/{case_id}/report.pdf"), "report_exported")
    assert pdf.detail == {"format": "pdf"}
    one(app, lambda: client.get(f"/api/v1/cases/{case_id}/report.pdf"), "report_exported")
    one(app, lambda: client.get(f"/cases/{case_id}/report"), "report_exported")
    # Thumbnails, crops and searches are parts of viewing, not events of their own.
    assert only_new(app, lambda: client.get(f"/cases/{case_id}/fields/1/thumbnail.jpg")) == []
    assert only_new(app, lambda: client.get("/api/v1/cases?reference=AUD")) == []

    body, content_type = multipart({}, [("images", ("more.png", images.make(size=(160, 160))))])
    added = one(
        app,
        lambda: client.post(
            f"/api/v1/cases/{case_id}/fields", data=body, content_type=content_type
        ),
        "case_fields_added",
    )
    assert added.detail == {"count": 1}

    review = {"decision": "override", "class": "pre_b", "comment": "looked again"}
    reviewed = one(
        app, lambda: client.post(f"/api/v1/cases/{case_id}/review", json=review), "case_reviewed"
    )
    assert reviewed.detail == {"decision": "override", "class": "pre_b"}
    one(
        app,
        lambda: client.post(f"/api/v1/cases/{case_id}/review", json={**review, "sign_off": True}),
        "case_signed_off",
    )
    one(app, lambda: client.delete(f"/api/v1/cases/{case_id}"), "case_deleted")


def test_a_refused_action_writes_no_event(app: Flask, client: FlaskClient, images) -> None:
    case_id = api_case(client, images)["id"]
    bad = {"decision": "override", "class": "not-a-class"}
    written = only_new(app, lambda: client.post(f"/api/v1/cases/{case_id}/review", json=bad))
    assert written == []
    assert only_new(app, lambda: client.get("/api/v1/cases/none")) == []


def test_the_case_records_its_creator_and_reviewer(as_role, images) -> None:
    clinician = as_role("clinician")
    case = api_case(clinician, images)
    assert case["created_by"] == "clinician"
    reviewed = clinician.post(
        f"/api/v1/cases/{case['id']}/review",
        json={"decision": "override", "class": "benign", "sign_off": True},
    ).get_json()
    assert reviewed["reviews"][0]["reviewer"] == "clinician"
    viewer = as_role("viewer")
    refused = viewer.post(
        f"/api/v1/cases/{case['id']}/review", json={"decision": "override", "class": "benign"}
    )
    assert refused.status_code == 403


def test_sign_in_sign_out_and_failures_are_events(app: Flask) -> None:
    app_users(app)
    client = app.test_client()

    def attempt(password: str):
        page = client.get("/login").get_data(as_text=True)
        return client.post(
            "/login",
            data={"username": "viewer", "password": password, "csrf_token": form_token(page)},
        )

    failed = one(app, lambda: attempt("wrong password here"), "login_failed", actor=None)
    assert failed.object_id == "viewer"
    assert failed.detail == {"reason": "login_failed"}
    one(app, lambda: attempt(PASSWORDS["viewer"]), "login", actor="viewer")
    page = client.get("/cases/").get_data(as_text=True)
    one(
        app,
        lambda: client.post("/logout", data={"csrf_token": form_token(page)}),
        "logout",
        actor="viewer",
    )


def test_user_and_token_changes_on_the_admin_page_are_events(
    app: Flask, client: FlaskClient
) -> None:
    token = form_token(client.get("/admin/users").get_data(as_text=True))
    created = one(
        app,
        lambda: client.post(
            "/admin/users", data={"username": "nurse.b", "role": "viewer", "csrf_token": token}
        ),
        "user_created",
    )
    assert created.object_id == "nurse.b"
    assert created.detail == {"role": "viewer"}
    made = client.post("/admin/users/nurse.b/tokens", data={"csrf_token": token})
    assert made.status_code == 303
    assert "ball_" in client.get(made.headers["Location"]).get_data(as_text=True)
    [event] = [e for e in events(app) if e.action == "token_created"]
    assert event.detail == {"user": "nurse.b"}
    one(
        app,
        lambda: client.post(f"/admin/tokens/{event.object_id}/revoke", data={"csrf_token": token}),
        "token_revoked",
    )
    one(
        app,
        lambda: client.post(
            "/admin/users/nurse.b/active", data={"active": "0", "csrf_token": token}
        ),
        "user_disabled",
    )
    one(
        app,
        lambda: client.post(
            "/admin/users/nurse.b/active", data={"active": "1", "csrf_token": token}
        ),
        "user_enabled",
    )
    # The admin cannot lock themselves out.
    own = client.post("/admin/users/admin/active", data={"active": "0", "csrf_token": token})
    assert own.status_code == 303
    said = client.get(own.headers["Location"]).get_data(as_text=True)
    assert "You cannot disable your own account." in said


def test_no_event_holds_image_content_or_a_secret(app: Flask, client: FlaskClient, images) -> None:
    api_case(client, images)
    token = form_token(client.get("/admin/users").get_data(as_text=True))
    page = client.post("/admin/users/viewer/tokens", data={"csrf_token": token})
    shown = client.get(page.headers["Location"]).get_data(as_text=True)
    secret = shown.split('id="secret-text">')[1].split("<")[0]
    dump = " ".join(f"{e.object_id} {e.detail}" for e in events(app))
    assert secret not in dump
    assert secret.split("_", 2)[2] not in dump
    assert "PNG" not in dump
    assert "sha256" not in dump
    # Held only until its page showed it: a reload shows the page without it.
    with app.extensions["records"].engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM held_pages").scalar() == 0
    again = client.get(page.headers["Location"]).get_data(as_text=True)
    assert secret not in again
    assert 'id="user-list"' in again


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_database_refuses_to_change_or_remove_an_event(
    database: str, request, app_config, inference_service, client: FlaskClient
) -> None:
    from app import create_app

    config = dict(app_config)
    if database == "postgresql":
        config["DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
    target = create_app(config, inference=inference_service)
    app_users(target)
    engine = target.extensions["records"].engine
    with target.extensions["records"].sessions() as session:
        record(session, "login", "admin")
        session.commit()
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT actor FROM audit_events")).scalars().all() == [
            "admin"
        ]
    engine.dispose()


def test_no_route_can_change_or_remove_an_event(app: Flask) -> None:
    audit_rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.audit")]
    assert {r.endpoint for r in audit_rules} == {"admin.audit_trail", "admin.audit_csv"}
    for rule in audit_rules:
        assert rule.methods is not None
        assert rule.methods <= {"GET", "HEAD", "OPTIONS"}


def test_the_audit_page_filters_and_its_csv_reads_back(
    app: Flask, client: FlaskClient, as_role, images
) -> None:
    first = api_case(client, images)["id"]
    api_case(as_role("clinician"), images)
    client.get(f"/api/v1/cases/{first}")

    page = client.get("/admin/audit?action=case_created")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("case created") >= 2
    assert "case viewed</td>" not in html
    only_clinician = client.get("/admin/audit?actor=clinician").get_data(as_text=True)
    assert "1 event." in only_clinician

    exported = client.get("/admin/audit.csv?object=" + first)
    assert exported.status_code == 200
    assert exported.mimetype == "text/csv"
    assert "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [r["action"] for r in rows] == ["case_created", "case_viewed"]
    assert all(r["object_id"] == first and r["actor"] == "admin" for r in rows)
    assert rows[0]["detail"] == "fields=2;model=lenet"
    assert all(r["object_reference"] == "AUD-1" for r in rows)
    # The export itself is an event.
    assert Counter(e.action for e in events(app))["audit_exported"] == 1
    assert client.get("/admin/audit?from=yesterday").status_code == 422


def test_a_formula_in_a_username_is_not_run_by_a_spreadsheet(app: Flask, client) -> None:
    attacker = app.test_client()
    page = attacker.get("/login").get_data(as_text=True)
    attacker.post(
        "/login",
        data={"username": "=HYPERLINK(1)", "password": "x", "csrf_token": form_token(page)},
    )
    rows = list(csv.DictReader(io.StringIO(client.get("/admin/audit.csv").get_data(as_text=True))))
    assert rows[-1]["object_id"].startswith("'=")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_every_exported_cell_is_escaped_the_address_too(app_config, inference_service) -> None:
    """Finding 13: behind a trusted proxy a forged X-Forwarded-For became the recorded
    address and reached the CSV as a formula."""
    from app import create_app

    target = create_app({**app_config, "TRUSTED_PROXIES": 1}, inference=inference_service)
    app_users(target)
    hostile = "=cmd|' /C calc'!A0"
    attacker = target.test_client()
    forwarded = {"X-Forwarded-For": hostile}
    page = attacker.get("/login", headers=forwarded).get_data(as_text=True)
    attacker.post(
        "/login",
        data={"username": "@SUM(1+1)", "password": "x", "csrf_token": form_token(page)},
        headers=forwarded,
    )
    exported = admin_client(target).get("/admin/audit.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    [failed] = [r for r in rows if r["action"] == "login_failed"]
    assert failed["address"] == "'" + hostile
    assert failed["object_id"] == "'@sum(1+1)"
    cells = [cell for row in csv.reader(io.StringIO(exported)) for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    target.extensions["records"].engine.dispose()


@pytest.mark.parametrize(("proxies", "recorded"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_behind_the_proxy_the_client_address_is_recorded(
    app_config, inference_service, proxies: int, recorded: str
) -> None:
    from app import create_app

    target = create_app({**app_config, "TRUSTED_PROXIES": proxies}, inference=inference_service)
    client = target.test_client()
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    page = client.get("/login", headers=forwarded).get_data(as_text=True)
    # Behind TLS the CSRF check also wants the form's own page as the Referer, which the
    # same-origin referrer policy lets browsers send.
    referer = ("https" if proxies else "http") + "://localhost/login"
    answer = client.post(
        "/login",
        data={"username": "ghost", "password": "x", "csrf_token": form_token(page)},
        headers={**forwarded, "Referer": referer},
    )
    assert answer.status_code == 303  # refused, and back to the form
    [event] = events(target)
    assert event.action == "login_failed"
    assert event.address == recorded
    target.extensions["records"].engine.dispose()


def test_the_audit_trail_names_cases_by_their_reference(
    app: Flask, client: FlaskClient, images
) -> None:
    kept = api_case(client, images, n=1, reference="LAB-KEPT-7")["id"]
    gone = api_case(client, images, n=1, reference="LAB-GONE-8")["id"]
    client.get(f"/api/v1/cases/{gone}")
    assert client.delete(f"/api/v1/cases/{gone}").status_code in (200, 204)

    html = client.get("/admin/audit?action=case_created").get_data(as_text=True)
    assert f'<a href="/cases/{kept}">case LAB-KEPT-7</a>' in html
    assert f"(<code>{kept}</code>)" in html  # the id is still there, for the search
    # A deleted case keeps its name (from its deletion event) but links nowhere.
    assert "case LAB-GONE-8 (deleted)" in html
    assert f'href="/cases/{gone}"' not in html

    # Searched for by its reference, as by its id.
    by_reference = client.get("/admin/audit?object=LAB-KEPT-7").get_data(as_text=True)
    assert "1 event." in by_reference
    assert "LAB-GONE-8" not in by_reference

    rows = list(csv.DictReader(io.StringIO(client.get("/admin/audit.csv").get_data(as_text=True))))
    named = {r["object_id"]: r["object_reference"] for r in rows if r["object_type"] == "case"}
    assert named == {kept: "LAB-KEPT-7", gone: "LAB-GONE-8"}
    assert all(r["object_reference"] == "" for r in rows if r["object_type"] != "case")


def test_an_upload_batch_is_one_event_however_its_photographs_are_sent(
    app: Flask, client: FlaskClient, images
) -> None:
    """The new-case page's script announces N photographs with the case, then sends them
    one at a time: that is one upload, and one event (the case's creation), not N + 1."""
    token = form_token(client.get("/cases/new").get_data(as_text=True))
    as_json = {"Accept": "application/json"}
    body, content_type = multipart(
        {"reference": "BATCH-1", "files_follow": "3", "csrf_token": token}, []
    )
    created = client.post("/cases/", data=body, content_type=content_type, headers=as_json)
    assert created.status_code == 201
    fields_url = created.get_json()["fields_url"]

    def send_one(seed: int) -> None:
        picture = [("images", (f"f{seed}.png", images.make(size=(160, 160), seed=seed)))]
        body, content_type = multipart({"csrf_token": token}, picture)
        sent = client.post(fields_url, data=body, content_type=content_type, headers=as_json)
        assert sent.status_code == 200

    def send_three() -> None:
        for seed in range(3):
            send_one(seed)

    assert only_new(app, send_three) == []
    [event] = [e for e in events(app) if e.object_id == created.get_json()["id"]]
    assert event.action == "case_created"
    assert event.detail["fields"] == 3

    # More photographs later, beyond the announced ones, are an upload of their own: one event.
    more = [("images", (f"m{i}.png", images.make(size=(160, 160), seed=10 + i))) for i in range(2)]
    body, content_type = multipart({"csrf_token": token}, more)
    added = one(
        app,
        lambda: client.post(fields_url, data=body, content_type=content_type),
        "case_fields_added",
    )
    assert added.detail == {"count": 2}
