"""The boundary search that splits multipart bodies finds what Werkzeug's own patterns find,
and the app's form parser uses it."""

from __future__ import annotations

import io
import random

import pytest
from flask import Flask
from werkzeug import formparser
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import MultipartDecoder

from app.web.multipart import MAX_NEAR_MISSES, BoundarySearchDecoder, DelimiterSearch

BOUNDARIES = (
    b"B",
    b"ab",
    b"-",
    b"--",
    b"x-y",
    b"a\nb",
    b"\r",
    b"a.b*c+d?(e)[f]\\g",
    b"0123456789abcdef0123456789abcdef",
    b"----WebKitFormBoundary7MA4YWxkTrZu0gW",
)
# Line breaks, horizontal and other white space, dashes and plain bytes: what the patterns
# treat differently around a delimiter.
PIECES = (b"-", b"--", b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x0b", b"\x0c", b"a", b"b")


def _found(match: object) -> tuple[int, int, bytes] | None:
    if match is None:
        return None
    return match.start(), match.end(), match.group(1)  # type: ignore[attr-defined]


# Werkzeug's pattern from the first delimiter that ends no part, never, or as served.
@pytest.mark.parametrize("max_near_misses", [0, 10**9, MAX_NEAR_MISSES])
def test_the_search_finds_what_werkzeugs_patterns_find_at_every_position(
    max_near_misses: int,
) -> None:
    rng = random.Random(20261207)
    compared = 0
    for trial in range(1000):
        boundary = rng.choice(BOUNDARIES)
        werkzeug = MultipartDecoder(boundary)
        pairs = (
            (DelimiterSearch(boundary, True, max_near_misses), werkzeug.preamble_re),
            (DelimiterSearch(boundary, False, max_near_misses), werkzeug.boundary_re),
        )
        pieces = [rng.choice((*PIECES, b"--" + boundary)) for _ in range(rng.randint(0, 14))]
        joined = b"".join(pieces)
        buffer = bytearray(joined) if trial % 2 else joined  # the decoder searches a bytearray
        for pos in range(len(buffer) + 2):
            for ours, theirs in pairs:
                assert _found(ours.search(buffer, pos)) == _found(theirs.search(buffer, pos)), (
                    boundary,
                    bytes(buffer),
                    pos,
                )
                compared += 1
    assert compared > 15_000


def test_a_body_of_delimiters_that_end_no_part_is_searched_by_werkzeugs_pattern() -> None:
    search = DelimiterSearch(b"B", line_break_optional=False)
    crafted = b"\n--Bx" * 1000 + b"\r\n--B\r\n"
    found = search.search(crafted)
    assert search.pattern is not None
    assert _found(found) == _found(MultipartDecoder(b"B").boundary_re.search(crafted))
    plain = DelimiterSearch(b"B", line_break_optional=False)
    assert plain.search(b"photograph bytes\r\n--B\r\n") is not None
    assert plain.pattern is None


def _body(boundary: bytes, newline: bytes = b"\r\n") -> bytes:
    """A form with a text field and two files whose bytes hold near-delimiters."""
    b, n = boundary, newline
    return b"".join(
        [
            b"a preamble to ignore" + n,
            b"--" + b + n + b'Content-Disposition: form-data; name="model"' + n + n,
            b"lenet" + n,
            b"--" + b + b" \t" + n,  # horizontal space after a delimiter
            b'Content-Disposition: form-data; name="image"; filename="a.jpg"' + n,
            b"Content-Type: application/octet-stream" + n + n,
            b"\xff\xd8 --" + b + b" not after a line break " + n + b"--" + b + b"x",
            n + b"--" + b[:-1] + n + b"\x00\xff" + n,
            b"--" + b + n + b'Content-Disposition: form-data; name="image"; filename="b.jpg"',
            n + n + n + b"--" + b + b"--" + n,
            b"an epilogue",
        ]
    )


def _parse(
    body: bytes, boundary: bytes, buffer_size: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str | None, bytes]]]:
    parser = formparser.MultiPartParser(
        stream_factory=lambda *_, **__: io.BytesIO(),  # in memory, as the app keeps uploads
        max_form_memory_size=500_000,
        max_form_parts=100,
        buffer_size=buffer_size,
    )
    fields, files = parser.parse(io.BytesIO(body), boundary, len(body))
    return (
        list(fields.items(multi=True)),
        [(name, f.filename, f.read()) for name, f in files.items(multi=True)],
    )


def _outcome(body: bytes, boundary: bytes, buffer_size: int) -> object:
    try:
        return _parse(body, boundary, buffer_size)
    except (ValueError, RequestEntityTooLarge) as exc:
        return type(exc)


@pytest.mark.parametrize("buffer_size", [7, 100, 64 * 1024])
@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
@pytest.mark.parametrize("boundary", [b"0123456789abcdef", b"----WebKitFormBoundaryZ", b"a-b"])
def test_whole_bodies_parse_to_the_same_fields_and_files(
    monkeypatch: pytest.MonkeyPatch, boundary: bytes, newline: bytes, buffer_size: int
) -> None:
    body = _body(boundary, newline)
    bodies = [body, body[: len(body) // 2], body.replace(b"--" + boundary + b"--", b"")]
    monkeypatch.setattr(formparser, "MultipartDecoder", MultipartDecoder)
    werkzeug = [_outcome(b, boundary, buffer_size) for b in bodies]
    monkeypatch.setattr(formparser, "MultipartDecoder", BoundarySearchDecoder)
    ours = [_outcome(b, boundary, buffer_size) for b in bodies]
    assert ours == werkzeug
    if buffer_size < len(body):
        return  # in small chunks Werkzeug's parser splits some of these bodies elsewhere too
    fields, files = _parse(body, boundary, buffer_size)
    assert fields == [("model", "lenet")]
    assert [(name, filename) for name, filename, _ in files] == [
        ("image", "a.jpg"),
        ("image", "b.jpg"),
    ]


def test_the_app_parses_forms_with_the_boundary_search(app: Flask) -> None:
    assert vars(formparser)["MultipartDecoder"] is BoundarySearchDecoder
