"""Request logs (one JSON line per request) and Prometheus metrics at GET /metrics.

Under gunicorn, gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before the workers start;
each worker then writes its metrics to files there and /metrics adds up all workers.
In a single process (flask run, tests) the default registry is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import TextIO

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.web.auth import requires

REQUEST_ID_HEADER = "X-Request-ID"
# A client-supplied request id is echoed only if it is short and plain (it ends up in logs).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Requests that match no route share one label, so scanners cannot blow up cardinality.
UNMATCHED_ROUTE = "<unmatched>"
# Likewise any method outside HTTP's own: a client can send any word as the method.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "<other>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.0)

# Created once per process: a second app would raise "Duplicated timeseries" if made per app.
REQUESTS = Counter("http_requests", "HTTP requests handled.", ["method", "route", "status"])
PREDICTION_LATENCY = Histogram(
    "prediction_latency_seconds",
    "Latency of successful prediction requests, from request start to response.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)

request_log = logging.getLogger("app.requests")


class _JsonLineHandler(logging.StreamHandler[TextIO]):
    """Writes each record's ``fields`` dict as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {"message": record.getMessage()}
        return json.dumps(fields, separators=(",", ":"))


def _configure_request_log() -> None:
    if not any(isinstance(h, _JsonLineHandler) for h in request_log.handlers):
        request_log.addHandler(_JsonLineHandler(sys.stdout))
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def _start_request() -> None:
    g.request_start = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    started = g.get("request_start")
    latency_s = time.perf_counter() - started if started is not None else 0.0
    request_id = g.get("request_id") or uuid.uuid4().hex
    model = g.get("model_name")
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    method = request.method if request.method in KNOWN_METHODS else OTHER_METHOD

    REQUESTS.labels(method, route, str(response.status_code)).inc()
    if model and 200 <= response.status_code < 300:
        PREDICTION_LATENCY.labels(model).observe(latency_s)

    response.headers[REQUEST_ID_HEADER] = request_id
    # Only request metadata: never the upload, its filename or the query string.
    request_log.info(
        "request",
        extra={
            "fields": {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "event": "request",
                "request_id": request_id,
                "method": method,
                "path": request.path,
                "status": response.status_code,
                "model": model,
                "latency_ms": round(latency_s * 1000.0, 2),
            }
        },
    )
    return response


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: all workers' files in multiprocess mode, else this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


metrics_bp = Blueprint("metrics", __name__)


@metrics_bp.get("/metrics")
@requires("read")
def metrics() -> Response:
    return Response(generate_latest(metrics_registry()), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Add request logging, the X-Request-ID header and GET /metrics to ``app``."""
    _configure_request_log()
    # First before-request hook and last after-request hook (Flask runs those in reverse),
    # so the latency and status cover what the app's other hooks do too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request_funcs.setdefault(None, []).insert(0, _finish_request)
    app.register_blueprint(metrics_bp)
