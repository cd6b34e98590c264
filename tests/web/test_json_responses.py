"""JSON responses encoded by orjson read as Flask's own encoder wrote them: keys in their
order, dates and dataclasses alike, text as UTF-8, and what orjson cannot write by Flask's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider


@dataclass
class Point:
    x: int
    y: float


VALUE = {
    "pro_b": 0.1 + 0.2,
    "benign": 1e-300,
    "at": datetime(2026, 12, 7, 21, 0, tzinfo=UTC),
    "point": Point(1, 2.5),
    "words": "Früh → Pre-B",
}


def test_a_response_reads_as_flasks_own_encoder_wrote_it(app: Flask) -> None:
    with app.test_request_context():
        body = jsonify(VALUE).get_data()
        expected = DefaultJSONProvider(app).dumps(VALUE, sort_keys=False)
    assert json.loads(body) == json.loads(expected)
    assert list(json.loads(body)) == list(VALUE)  # the keys in their order, not sorted
    assert json.loads(body)["at"] == "Mon, 07 Dec 2026 21:00:00 GMT"
    assert "ü" in body.decode()  # orjson's text, not Flask's escapes


def test_what_orjson_cannot_write_flasks_encoder_does(app: Flask) -> None:
    with app.test_request_context():
        assert json.loads(jsonify({"big": 2**70}).get_data()) == {"big": 2**70}


def test_the_text_is_utf8_and_compact_out_of_debug_indented_in_it(app: Flask) -> None:
    small = {"words": "Früh → Pre-B", "n": [1, 2]}
    with app.test_request_context():
        body = jsonify(small).get_data()
        assert body == '{"words":"Früh → Pre-B","n":[1,2]}\n'.encode()
        app.debug = True
        assert (
            jsonify(small).get_data()
            == json.dumps(small, indent=2, ensure_ascii=False).encode() + b"\n"
        )
