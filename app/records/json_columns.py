"""The text of the records' JSON columns, written and read by orjson.

A case's commit writes a JSON value for each cell's box and probabilities and each field's
checks and timings, and its answer reads them back: orjson does both several times faster
than the standard library. Values orjson cannot write (integers beyond 64 bits) and text it
cannot read (NaN, which older rows may hold) go through the standard library instead.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Keys that are not strings (an int, say) become strings, as the standard library makes them.
OPTIONS = orjson.OPT_NON_STR_KEYS


def json_text(value: Any) -> str:
    """The JSON text a column stores for ``value``."""
    try:
        return orjson.dumps(value, option=OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def json_value(text: str | bytes) -> Any:
    """The value of a column's JSON text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def as_stored(value: Any) -> Any:
    """``value`` as a JSON column gives it back (tuples become lists, keys strings)."""
    return json_value(json_text(value))
