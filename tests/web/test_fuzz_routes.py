"""Hostile query strings and path parameters at every route of the URL map, as every role
(anonymous, each role signed in and with its token), on SQLite and on PostgreSQL: nothing may
answer 5xx or raise. A route added later is fuzzed too, since the routes are read from the
map."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from app import create_app
from app.core.service import InferenceService
from tests.support.accounts import ROLES, signed_in, token_for, with_token
from tests.support.cases import write_case

# Raw, already percent-encoded: what a client can put in a path segment.
HOSTILE_SEGMENTS = (
    "%00",
    "%ff%fe",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "'%20OR%201%3D1--",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "%0d%0aSet-Cookie:%20x%3D1",
    "%E2%80%AE%F0%9F%92%A9",
    "%5C%5Cevil.example",
    "-1",
    "NaN",
    "9" * 30,
    "x" * 4000,
)
# What an integer converter lets through: only digits.
HOSTILE_NUMBERS = ("0", "00001", "2147483648", "9223372036854775808", "9" * 40)
HOSTILE_QUERIES = (
    "page=-1",
    "page=4611686018427387904",
    "page=1e9&page=2",
    "page=%00",
    "from=9999-12-31&to=0001-01-01",
    "to=9999-12-31",
    "from=2024-02-30&to=2024-13-01",
    "from=%ff%fe&to=%00",
    "status=%3Cscript%3E&review=%27",
    "reference=%00%27%22%3B--",
    "_method=POST&_external=1&_scheme=javascript",
    "next=%2F%2Fevil.example",
    "next=%2F%09%2Fevil.example%0a",
    "model=..%2F..%2Fx&explain=1",
    "user=%00&action=%ff&object=%0a&from=x",
    "q=" + "x" * 10000,
    "%ff=%fe&%00=%00",
    "key[]=1&cells[0]=2",
)
# Path values that name real objects, so a hostile query reaches the view behind them.
OBJECTS = {"position": "1", "crop_id": "1", "username": "viewer", "filename": "style.css"}
SAFE = {"GET"}
ANONYMOUS = "anonymous"


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzzed(
    request, app_config: dict[str, object], inference_service: InferenceService
) -> Iterator[Flask]:
    config = dict(app_config)
    if request.param == "postgresql":
        config["DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
    app = create_app(config, inference=inference_service)
    yield app
    app.extensions["records"].engine.dispose()


def urls(rule: Rule, method: str, public_id: str) -> Iterator[str]:
    """The rule's URL with each hostile value in each of its path parameters, and, for a
    method that changes nothing, with real objects and each hostile query."""
    path = rule.rule
    for name, converter in rule._converters.items():
        values = HOSTILE_NUMBERS if converter.regex == r"\d+" else HOSTILE_SEGMENTS
        for value in values:
            yield _filled(path, {name: value}, public_id)
    real = _filled(path, {}, public_id)
    queries = HOSTILE_QUERIES if method in SAFE or not rule.arguments else HOSTILE_QUERIES[:4]
    for query in queries:
        yield f"{real if method in SAFE or not rule.arguments else _filled(path, {}, 'x')}?{query}"


def _filled(path: str, hostile: dict[str, str], public_id: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        return hostile.get(name, public_id if name == "public_id" else OBJECTS.get(name, "x"))

    return re.sub(r"<([^>]+)>", value, path)


def client_as(app: Flask, role: str) -> FlaskClient:
    """A new client: anonymous, or signed in as the role's user with its token."""
    if role == ANONYMOUS:
        return app.test_client()
    return with_token(signed_in(app.test_client(), role), token_for(app, role))


# One test per role, so a parallel run spreads the requests over its workers.
@pytest.mark.parametrize("role", [ANONYMOUS, *ROLES])
def test_no_route_answers_5xx_to_hostile_paths_and_queries(fuzzed: Flask, role: str) -> None:
    public_id = write_case(fuzzed, "FUZZ-1", ["benign", "pre_b"])
    failures = []
    sent = 0
    for rule in sorted(fuzzed.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            # A fresh sign-in per route: a sign-out or a refused form must not end the others.
            client = client_as(fuzzed, role)
            token = _form_token(client) if method not in SAFE else ""
            for url in urls(rule, method, public_id):
                sent += 1
                data = {"csrf_token": token} if token else None
                try:
                    with client.open(url, method=method, data=data) as response:
                        status = response.status_code
                except Exception as exc:  # every one is reported below
                    failures.append(f"{role} {method} {url[:120]}: {exc!r}"[:300])
                    continue
                if status >= 500:
                    failures.append(f"{role} {method} {url[:120]}: {status}")
    print(f"{sent} requests")
    assert not failures, "\n".join(failures[:40])


def _form_token(client: FlaskClient) -> str:
    """A CSRF token of this sign-in, so a form's view is reached (none when signed out)."""
    page = client.get("/cases/").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    return found.group(1) if found else ""


def test_a_nul_in_a_form_or_json_field_is_refused_before_the_database(fuzzed: Flask) -> None:
    public_id = write_case(fuzzed, "FUZZ-2", ["benign"])
    client = with_token(signed_in(fuzzed.test_client(), "admin"), token_for(fuzzed, "admin"))
    form = {"csrf_token": _form_token(client), "reference": "A\x00B", "note": "n"}
    refused = client.post("/cases/", data=form)
    assert refused.status_code == 400
    assert "NUL character" in refused.get_data(as_text=True)
    review = client.post(
        f"/api/v1/cases/{public_id}/review", json={"decision": "agree", "comment": "a\x00"}
    )
    assert review.status_code == 400
    assert "NUL character" in review.get_json()["error"]["message"]
