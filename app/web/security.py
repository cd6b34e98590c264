"""Security hardening: response headers, CSRF, and in-memory-only uploads (parsed by
``app.web.multipart``'s boundary search)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from app.web.errors import UploadLimitError
from app.web.extensions import csrf
from app.web.multipart import use_boundary_search

F = TypeVar("F", bound=Callable[..., Any])
MB = 1024 * 1024

# No inline script or style: JS and CSS come from /static; pictures are data: URIs.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Same-origin only: over HTTPS the CSRF check needs the Referer of our own forms, and
    # no other site ever learns a case's URL.
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def upload_limit(setting: str) -> Callable[[F], F]:
    """Mark a view whose requests may be as large as the config's ``setting`` says (a case's
    photographs in one request), instead of MAX_CONTENT_LENGTH."""

    def mark(view: F) -> F:
        view.upload_limit = setting  # type: ignore[attr-defined]
        return view

    return mark


def _apply_upload_limit() -> None:
    """The view's own size limit, set before anything reads the body (the CSRF check does)."""
    view = current_app.view_functions.get(request.endpoint or "")
    setting = getattr(view, "upload_limit", None)
    if setting is not None:
        request.max_content_length = current_app.config[setting]


def _refuse_nul() -> None:
    """A NUL character in the path or a form or JSON field is refused before any view runs:
    PostgreSQL cannot hold one in text, and no field has a use for it (a search's query is
    checked with its other terms)."""
    form = request.form if request.method in ("POST", "PUT", "PATCH", "DELETE") else {}
    body = request.get_json(silent=True) if request.is_json else None
    texts = [request.path, *_strings(form), *_strings(body)]
    if any("\x00" in text for text in texts):
        raise BadRequest(
            "The request holds a NUL character (in its address or a field), which no field "
            "may hold."
        )


def _strings(value: Any) -> Iterator[str]:
    """Every key and text in a form or a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif hasattr(value, "items"):
        for key, item in value.items(multi=True) if hasattr(value, "getlist") else value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class _CountingStream(io.RawIOBase):
    """The body as the form parser reads it, counting its bytes and multipart delimiters."""

    def __init__(self, stream: IO[bytes], boundary: bytes) -> None:
        super().__init__()
        self._stream = stream
        self._delimiter = b"--" + boundary
        self._tail = b""
        self.delimiters = 0
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(-1 if size is None else size)
        self.size += len(data)
        # A delimiter may straddle two reads: the last bytes of the previous one come along.
        window = self._tail + data
        self.delimiters += window.count(self._delimiter)
        self._tail = window[-(len(self._delimiter) - 1) :]
        return data


class InMemoryRequest(Request):
    """A request whose uploaded files are always kept in memory, and whose 413 names the limit
    that was passed.

    Werkzeug spools uploads over 500 KB to a temporary file; patient images
    must never touch the disk, and MAX_CONTENT_LENGTH bounds the memory used.
    """

    _counted: _CountingStream | None = None

    def _get_stream_for_parsing(self) -> IO[bytes]:
        stream = super()._get_stream_for_parsing()
        boundary = self.mimetype_params.get("boundary", "")
        if self.mimetype == "multipart/form-data" and boundary:
            self._counted = _CountingStream(stream, boundary.encode("latin-1"))
            return cast(IO[bytes], self._counted)
        return stream

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            # Read again, the form is empty rather than refused a second time (error pages).
            self.__dict__["form"] = self.parameter_storage_class()
            self.__dict__["files"] = self.parameter_storage_class()
            raise UploadLimitError(self._limit_passed()) from None

    def _limit_passed(self) -> str:
        """Which of the request's limits it went over, in words."""
        limit = self.max_content_length or 0
        size = max(self.content_length or 0, self._counted.size if self._counted else 0)
        if limit and size > limit:
            return _size_refusal(size, limit)
        parts = (self._counted.delimiters - 1) if self._counted else 0
        if self.max_form_parts is not None and parts > self.max_form_parts:
            return (
                f"The form has more than {self.max_form_parts:,} parts, its limit; "
                "send fewer files or fields in one request."
            )
        text = (self.max_form_memory_size or 0) / 1000
        return f"A text field of the form is over {text:g} KB, its limit."

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def _size_refusal(size: int, limit: int) -> str:
    if limit == current_app.config.get("MAX_CASE_UPLOAD_BYTES"):
        return (
            f"The request is {size / MB:.0f} MB; a case's photographs in one request may "
            f"total {limit / MB:g} MB. Send the rest as more photographs for the case."
        )
    return f"The file is too large; the limit is {limit / MB:g} MB."


def init_app(app: Flask) -> None:
    """Install CSRF protection, in-memory uploads and the security headers."""
    app.request_class = InMemoryRequest
    use_boundary_search()
    app.before_request(_apply_upload_limit)  # before CSRF's own hook reads the form
    app.before_request(_refuse_nul)
    csrf.init_app(app)

    @app.after_request
    def _set_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config.get("SESSION_COOKIE_SECURE"):
            # Only meaningful (and only sent) when the site is served over HTTPS.
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        # Results describe a patient's image: never cache them anywhere.
        response.headers.setdefault("Cache-Control", "no-store")
        return response
