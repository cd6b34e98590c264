"""Two app instances on one PostgreSQL database and one image store, as behind a proxy or
in a cluster: a case made through one is read, reviewed and exported through the other, and
two sign-offs sent at once through both end with exactly one accepted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.model_files import model_names
from tests.support.images import ImageFactory
from tests.support.models import DEFAULT_AND_LENET, served_models_dir
from tests.support.server import GunicornServer, multipart

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """Both instances, started at once on an empty database (so they migrate it in turn),
    for the whole module: each test works on cases of its own."""
    from tests.support.postgres import fresh_database

    if not model_names(served_models_dir()):
        pytest.skip("no trained models")
    with fresh_database(postgres_server) as url:
        env = {
            "APP_ENV": "production",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "DATABASE_URL": url,
            "IMAGE_STORE": str(tmp_path_factory.mktemp("two-instances") / "images"),
            "SECRET_KEY": "s" * 64,
        }
        first = GunicornServer(env=env, models=DEFAULT_AND_LENET).start()
        servers = (first, GunicornServer(env=env, models=DEFAULT_AND_LENET).start())
        try:
            for server in servers:
                server.wait_ready(timeout=300)
                server.wait_all_workers_ready(1, timeout=300)
            yield servers
        finally:
            for server in servers:
                server.stop()


def create_case(server: GunicornServer, reference: str) -> dict[str, Any]:
    factory = ImageFactory()
    files = [("images", (f"{i}.png", factory.make(size=(160, 160), seed=i))) for i in range(3)]
    body, content_type = multipart({"reference": reference}, files)
    with server.client() as client:
        status, answer = client.request("POST", "/api/v1/cases", body, content_type)
    assert status == 201, answer[:300]
    return json.loads(answer)


def sign_off(
    server: GunicornServer, case_id: str, gate: threading.Barrier
) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"decision": "override", "class": "benign", "sign_off": True}).encode()
    with server.client() as client:
        client.request("GET", "/healthz")  # connected before the gate opens
        gate.wait()
        status, answer = client.request(
            "POST", f"/api/v1/cases/{case_id}/review", body, "application/json"
        )
    return status, json.loads(answer)


def test_a_case_made_on_one_instance_is_read_reviewed_and_exported_on_the_other(pair) -> None:
    first, second = pair
    case = create_case(first, "TWO-1")
    with second.client() as client:
        status, answer = client.request("GET", f"/api/v1/cases/{case['id']}")
        assert status == 200
        assert json.loads(answer)["images"] == case["images"]
        body = json.dumps({"decision": "override", "class": "pre_b", "sign_off": True}).encode()
        status, _ = client.request(
            "POST", f"/api/v1/cases/{case['id']}/review", body, "application/json"
        )
        assert status == 201
        status, pdf_second = client.request("GET", f"/api/v1/cases/{case['id']}/report.pdf")
        assert status == 200
        assert pdf_second.startswith(b"%PDF")
    with first.client() as client:
        status, answer = client.request("GET", f"/api/v1/cases/{case['id']}")
        assert json.loads(answer)["review"]["class_id"] == "pre_b"
        status, pdf_first = client.request("GET", f"/api/v1/cases/{case['id']}/report.pdf")
        assert status == 200
        assert len(pdf_first) > 1000


def test_two_sign_offs_at_once_end_with_exactly_one_accepted(pair) -> None:
    first, second = pair
    for attempt in range(4):
        case = create_case(first, f"TWO-RACE-{attempt}")
        gate = threading.Barrier(2)
        results: list[tuple[int, dict[str, Any]]] = []

        def send(
            server: GunicornServer, case_id: str = case["id"], gate=gate, results=results
        ) -> None:
            results.append(sign_off(server, case_id, gate))

        threads = [threading.Thread(target=send, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        statuses = sorted(status for status, _ in results)
        assert statuses == [201, 409], results
        refused = next(body for status, body in results if status == 409)
        assert "signed" in refused["error"]["message"]
        with first.client() as client:
            _, answer = client.request("GET", f"/api/v1/cases/{case['id']}")
        reviews = json.loads(answer)["reviews"]
        assert len(reviews) == 1
        assert reviews[0]["signed_off"]
