"""Several gunicorn workers outside production share one session key: a form served by one
worker is accepted by any other (each used to make its own, and some posts failed CSRF)."""

from __future__ import annotations

import http.client
import re

import pytest

from app.core.model_files import model_names
from tests.support.accounts import PASSWORDS
from tests.support.models import DEFAULT_AND_LENET, served_models_dir
from tests.support.server import GunicornServer

pytestmark = pytest.mark.slow


def sign_in_once(port: int) -> tuple[int, str]:
    """GET the form and POST it on two new connections (the kernel spreads them over the
    workers); the status of the POST and where it sends the browser."""
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    first.request("GET", "/login")
    page = first.getresponse()
    cookie = page.getheader("Set-Cookie", "").split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
    first.close()
    assert token
    assert cookie
    body = f"username=clinician&password={PASSWORDS['clinician'].replace(' ', '+')}"
    body += f"&csrf_token={token.group(1)}"
    second = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    second.request(
        "POST",
        "/login",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    answer = second.getresponse()
    second.close()
    return answer.status, answer.getheader("Location", "")


def test_workers_share_one_key_outside_production() -> None:
    if not model_names(served_models_dir()):
        pytest.skip("no trained models")
    env = {"APP_ENV": "testing", "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "1", "SECRET_KEY": ""}
    server = GunicornServer(env=env, models=DEFAULT_AND_LENET).start()
    try:
        server.wait_ready(timeout=300)
        server.wait_all_workers_ready(3, timeout=300)
        assert server.token  # the test users, clinician among them
        # Nine, under the per-account limit (10 a minute) even if one worker takes them all.
        statuses = [sign_in_once(server.port) for _ in range(9)]
    finally:
        server.stop()
    # A refused sign-in (a CSRF failure among them) is a redirect too, back to the form.
    assert all(s == 303 and "/login" not in where for s, where in statuses), statuses
