"""Security hardening: response headers, CSRF, and in-memory-only uploads."""

from __future__ import annotations

import io
from typing import IO

from flask import Flask, Request, Response

from app.web.extensions import csrf

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


class InMemoryRequest(Request):
    """A request whose uploaded files are always kept in memory.

    Werkzeug spools uploads over 500 KB to a temporary file; patient images
    must never touch the disk, and MAX_CONTENT_LENGTH bounds the memory used.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def init_app(app: Flask) -> None:
    """Install CSRF protection, in-memory uploads and the security headers."""
    app.request_class = InMemoryRequest
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
