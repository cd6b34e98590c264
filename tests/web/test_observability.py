"""Request logs, request ids and /metrics, on a minimal Flask app and across processes."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from flask import Flask, g, jsonify, request
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.web import observability
from tests.support.models import ROOT


def make_app() -> Flask:
    flask_app = Flask("observability-test")

    @flask_app.post("/api/v1/predict")
    def predict():
        g.model_name = request.form.get("model", "lenet")
        if not request.files.get("image") or not request.files["image"].read():
            return jsonify(error="no image"), 400
        return jsonify({"class": "benign"})

    @flask_app.get("/boom")
    def boom():
        raise RuntimeError("unhandled")

    observability.init_app(flask_app)
    return flask_app


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handler = observability._JsonLineHandler(stream)
    observability.request_log.addHandler(handler)
    yield stream
    observability.request_log.removeHandler(handler)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def upload(client, data: bytes, filename: str = "patient-jane-doe.jpg", **form):
    return client.post(
        "/api/v1/predict",
        data={"image": (io.BytesIO(data), filename), **form},
        content_type="multipart/form-data",
    )


def test_one_json_line_per_request_without_upload_details(log_stream):
    client = make_app().test_client()
    payload = b"\xff\xd8SECRET-PIXELS"
    response = upload(client, payload, model="vggnet")
    assert response.status_code == 200
    client.get("/missing?name=patient-jane-doe")

    lines = log_lines(log_stream)
    assert len(lines) == 2
    first, second = lines
    assert first["method"] == "POST"
    assert first["path"] == "/api/v1/predict"
    assert first["status"] == 200
    assert first["model"] == "vggnet"
    assert first["latency_ms"] > 0
    assert len(first["request_id"]) == 32
    assert first["request_id"] == response.headers["X-Request-ID"]
    assert second["status"] == 404
    assert second["model"] is None
    assert second["path"] == "/missing"
    raw = log_stream.getvalue()
    assert "jane-doe" not in raw
    assert "SECRET" not in raw


def test_request_id_is_echoed_only_when_plain(log_stream):
    client = make_app().test_client()
    ok = client.get("/missing", headers={"X-Request-ID": "abc-123.x"})
    assert ok.headers["X-Request-ID"] == "abc-123.x"
    bad = client.get("/missing", headers={"X-Request-ID": 'evil id" injected'})
    assert bad.headers["X-Request-ID"] != 'evil id" injected'
    assert len(bad.headers["X-Request-ID"]) == 32
    assert [line["request_id"] for line in log_lines(log_stream)] == [
        "abc-123.x",
        bad.headers["X-Request-ID"],
    ]


def test_unhandled_error_is_logged_and_counted(log_stream):
    flask_app = make_app()
    client = flask_app.test_client()
    before = sample("http_requests_total", method="GET", route="/boom", status="500")
    assert client.get("/boom").status_code == 500
    assert sample("http_requests_total", method="GET", route="/boom", status="500") == before + 1
    assert log_lines(log_stream)[-1]["status"] == 500


def test_metrics_count_routes_and_prediction_latency():
    client = make_app().test_client()
    ok = dict(method="POST", route="/api/v1/predict", status="200")
    bad = dict(method="POST", route="/api/v1/predict", status="400")
    unmatched = dict(method="GET", route=observability.UNMATCHED_ROUTE, status="404")
    before = {
        k: sample("http_requests_total", **v)
        for k, v in {"ok": ok, "bad": bad, "unmatched": unmatched}.items()
    }
    hist_before = sample("prediction_latency_seconds_count", model="sequential")

    for _ in range(3):
        assert upload(client, b"x", model="sequential").status_code == 200
    assert upload(client, b"", model="sequential").status_code == 400
    client.get("/wp-login.php")
    client.get("/.env")

    assert sample("http_requests_total", **ok) == before["ok"] + 3
    assert sample("http_requests_total", **bad) == before["bad"] + 1
    assert sample("http_requests_total", **unmatched) == before["unmatched"] + 2
    # Only successful predictions enter the latency histogram.
    assert sample("prediction_latency_seconds_count", model="sequential") == hist_before + 3

    text = client.get("/metrics")
    assert text.status_code == 200
    assert text.mimetype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(text.get_data(as_text=True))}
    assert "http_requests" in families
    assert "prediction_latency_seconds" in families
    buckets = {
        s.labels["le"]
        for s in families["prediction_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert {"0.005", "2.0", "+Inf"} <= buckets
    assert not any(
        s.labels.get("route", "").startswith("/wp") for s in families["http_requests"].samples
    )


def test_many_apps_share_the_metrics_without_duplicates():
    apps = [make_app() for _ in range(5)]
    for flask_app in apps:
        assert flask_app.test_client().get("/metrics").status_code == 200
    handlers = [
        h
        for h in observability.request_log.handlers
        if isinstance(h, observability._JsonLineHandler)
    ]
    assert len(handlers) == 1


WORKER_SCRIPT = """
import sys
from pathlib import Path
from tests.web.test_observability import make_app, upload
client = make_app().test_client()
for _ in range(int(sys.argv[1])):
    assert upload(client, b"x", model="lenet").status_code == 200
if len(sys.argv) > 2:
    Path(sys.argv[2]).write_text(client.get("/metrics").get_data(as_text=True))
"""


def test_multiprocess_mode_adds_up_all_workers(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(ROOT)}
    script = WORKER_SCRIPT

    def run(n: int, *scrape_to: str) -> None:
        subprocess.run(
            [sys.executable, "-c", script, str(n), *scrape_to],
            env=env,
            capture_output=True,
            timeout=120,
            check=True,
        )

    run(4)
    run(3)
    run(2, str(tmp_path / "scrape.txt"))
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families((tmp_path / "scrape.txt").read_text())
        for s in family.samples
    }
    key = (
        "http_requests_total",
        (("method", "POST"), ("route", "/api/v1/predict"), ("status", "200")),
    )
    assert values[key] == 9
    assert values[("prediction_latency_seconds_count", (("model", "lenet"),))] == 9


def test_log_formatter_falls_back_to_message():
    handler = observability._JsonLineHandler(io.StringIO())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("text",), None)
    assert json.loads(handler.format(record)) == {"message": "plain text"}


def test_invented_methods_share_one_label(log_stream):
    client = make_app().test_client()
    for i in range(200):
        client.open("/api/v1/predict", method=f"INVENTED{i}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "INVENTED" not in text
    assert "INVENTED" not in log_stream.getvalue()
    other = {"method": "<other>", "route": observability.UNMATCHED_ROUTE, "status": "405"}
    assert sample("http_requests_total", **other) >= 200
