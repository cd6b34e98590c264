"""The JSON responses' bodies, encoded by orjson.

A case's answer lists every cell of every photograph (hundreds), which orjson encodes
several times faster than the standard library (docs/decisions.md, "A case's serial end,
second pass"). Only responses change: the ``tojson`` template filter and the session
cookie keep Flask's encoder. The text is UTF-8 as it is, JSON's own encoding, not ``\\u``
escapes; values only Flask's encoder takes fall back to it.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response as BaseResponse

# Dates and dataclasses go through Flask's ``default``, so they read as they always did.
OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
OPTIONS |= orjson.OPT_NON_STR_KEYS


class FastJSONProvider(DefaultJSONProvider):
    """Flask's provider, with ``jsonify`` and returned dicts encoded by orjson."""

    sort_keys = False  # keep class ids in their order

    def response(self, *args: Any, **kwargs: Any) -> BaseResponse:
        obj = self._prepare_response_obj(args, kwargs)
        option = OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        if (self.compact is None and self._app.debug) or self.compact is False:
            option |= orjson.OPT_INDENT_2
        try:
            body = orjson.dumps(obj, default=self.default, option=option)
        except orjson.JSONEncodeError:
            return super().response(*args, **kwargs)  # an integer beyond 64 bits, say
        response_class: type[Response] = self._app.response_class  # type: ignore[assignment]
        return response_class(body + b"\n", mimetype=self.mimetype)
