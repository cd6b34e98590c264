"""The deployment's nginx in front of a real gunicorn: nginx's own check passes; slow clients
that stop bare gunicorn do not stop the service behind the proxy, and one address cannot
hold every connection; forms, redirects and the API's URLs work on an HTTPS port that is
not 443; a photograph's body is held in memory, not written to the proxy's disk."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from app.core.model_files import model_names
from tests.support.accounts import PASSWORDS, form_token
from tests.support.images import ImageFactory
from tests.support.models import DEFAULT_AND_LENET, served_models_dir
from tests.support.nginx import TEMPLATE, Proxy, check, configure, nginx_binary, running_nginx
from tests.support.server import GunicornServer, multipart, predict_body

pytestmark = pytest.mark.slow

if nginx_binary() is None:
    pytest.skip("nginx is missing: apt-get install nginx (.ci/run does)", allow_module_level=True)

SLOW_CLIENTS = 32
ANOTHER_ADDRESS = "127.0.0.2"
BUFFERED_TO_DISK = "a client request body is buffered to a temporary file"


def per_address() -> int:
    """How many requests the proxy serves one address at once (the template's limit_conn)."""
    found = re.search(r"limit_conn per_address (\d+);", TEMPLATE.read_text())
    assert found, "the proxy does not limit the requests of one address"
    return int(found.group(1))


def test_the_proxy_configuration_passes_nginx_t(tmp_path: Path) -> None:
    conf, _ = configure(tmp_path / "nginx", upstream_port=8000)
    done = check(conf)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr
    assert "test is successful" in done.stderr


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    if not model_names(served_models_dir()):
        pytest.skip("no trained models")
    # As in the compose bundle: the proxy's X-Forwarded-* headers are believed.
    env = {
        "APP_ENV": "production",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
        "TRUSTED_PROXIES": "1",
    }
    srv = GunicornServer(env=env, models=DEFAULT_AND_LENET).start()
    try:
        srv.wait_ready(timeout=300)
        srv.wait_all_workers_ready(1, timeout=300)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def proxy(server: GunicornServer, tmp_path: Path) -> Iterator[Proxy]:
    with running_nginx(tmp_path / "nginx", server.port) as running:
        yield running


def tls(port: int, timeout: float, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        "127.0.0.1",
        port,
        timeout=timeout,
        context=ssl._create_unverified_context(),
        source_address=(source, 0),
    )


class Drip:
    """Connections that send a POST's headers, then one byte of its body a second."""

    def __init__(
        self, port: int, tls: bool, count: int = SLOW_CLIENTS, source: str = "127.0.0.1"
    ) -> None:
        self.port, self.tls, self.count, self.source = port, tls, count, source
        self.stop = threading.Event()
        self.ready = threading.Semaphore(0)  # released by each once its headers are sent
        self.failed: list[OSError] = []
        self.threads = [threading.Thread(target=self._drip, daemon=True) for _ in range(count)]

    def _drip(self) -> None:
        sock: socket.socket | None = None
        sent = False
        try:
            sock = socket.create_connection(
                ("127.0.0.1", self.port), timeout=5, source_address=(self.source, 0)
            )
            if self.tls:
                context = ssl._create_unverified_context()
                sock = context.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(
                b"POST /api/v1/predict HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
            )
            sent = True
            self.ready.release()
            while not self.stop.wait(1.0):
                sock.sendall(b"x")
        except OSError as exc:
            if not sent:  # could not even connect
                self.failed.append(exc)
                self.ready.release()
            # else dropped by the server: what a proxy should do
        finally:
            if sock is not None:
                sock.close()

    def __enter__(self) -> Drip:
        for thread in self.threads:
            thread.start()
        for _ in range(self.count):  # every connection is open and has sent its headers
            assert self.ready.acquire(timeout=20), "a slow client hangs before its headers"
        assert not self.failed, self.failed
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def predict_seconds(connect, token: str, image: bytes, timeout: float) -> float:
    """Seconds for one prediction on a new connection (``timeout`` when it did not finish)."""
    body, content_type = predict_body(image, "lenet")
    start = time.monotonic()
    connection = connect(timeout)
    try:
        connection.request(
            "POST",
            "/api/v1/predict",
            body=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"},
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    except TimeoutError:
        return timeout
    finally:
        connection.close()
    return time.monotonic() - start


def test_slow_clients_stop_bare_gunicorn_but_not_the_proxy(
    server: GunicornServer, proxy: Proxy
) -> None:
    image = ImageFactory().make("PNG", size=(160, 160))
    token = server.token

    def direct(timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)

    assert predict_seconds(direct, token, image, 10) < 1.0  # warm, and the service is fine
    with Drip(server.port, tls=False):
        # The defect, measured: once its threads have taken the slow uploads, bare gunicorn
        # answers nothing (polled: it takes them as they become readable).
        blocked = _wait_for(lambda: predict_seconds(direct, token, image, 3.0) >= 3.0, 20)
    assert blocked

    def proxied(timeout: float) -> http.client.HTTPSConnection:
        return tls(proxy.https_port, timeout)

    assert predict_seconds(proxied, token, image, 10) < 1.0
    with Drip(proxy.https_port, tls=True):
        times = [predict_seconds(proxied, token, image, 5.0) for _ in range(10)]
    assert max(times) < 1.0, times
    headers = _head(proxied, "/login")
    assert headers.get("server", "").lower() == "nginx"  # no version, not gunicorn
    refused = _raw(
        proxy.https_port,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n",
    )
    assert b" 400 " in refused.split(b"\r\n", 1)[0]
    assert b"X-Content-Type-Options: nosniff" in refused
    assert b"Content-Security-Policy" in refused


def test_one_address_holds_a_bounded_number_of_requests(
    server: GunicornServer, proxy: Proxy
) -> None:
    image = ImageFactory().make("PNG", size=(160, 160))

    def elsewhere(timeout: float) -> http.client.HTTPSConnection:
        return tls(proxy.https_port, timeout, source=ANOTHER_ADDRESS)

    limit = per_address()
    with Drip(proxy.https_port, tls=True, count=limit):
        # Once nginx has read the trickling requests' headers, the address is full: its next
        # request is refused at once, while another address is served as before.
        refused = _wait_for(lambda: _status(proxy.https_port, "/healthz") == 429, 10)
        assert refused, f"{limit} slow requests from one address left it room"
        assert _status(proxy.https_port, "/healthz", source=ANOTHER_ADDRESS) == 200
        assert predict_seconds(elsewhere, server.token, image, 5.0) < 1.0
    assert _wait_for(lambda: _status(proxy.https_port, "/healthz") == 200, 10)


def test_forms_redirects_and_urls_keep_a_port_other_than_443(
    server: GunicornServer, proxy: Proxy
) -> None:
    token = server.token  # the test users are made with it
    origin = f"https://127.0.0.1:{proxy.https_port}"
    assert proxy.https_port != 443
    browser = Browser(proxy.https_port)
    page = browser.get("/login")
    signed_in = browser.post_form(
        "/login",
        {"csrf_token": form_token(page), "username": "admin", "password": PASSWORDS["admin"]},
        referer=f"{origin}/login",
    )
    # A refused CSRF check sends the form back to /login; a sign-in goes on.
    assert signed_in.status == 303, signed_in
    assert signed_in.location == "/", signed_in
    upload = browser.get("/")
    images = [("image", ("smear.png", ImageFactory().make("PNG", size=(160, 160))))]
    body, content_type = multipart({"csrf_token": form_token(upload)}, images)
    checked = browser.post("/analyze", body, content_type, referer=f"{origin}/")
    assert checked.status == 303, checked
    assert checked.location.startswith("/result/"), checked

    # The API's URLs name the port.
    cases = [("images", ("smear.png", ImageFactory().make("PNG", size=(160, 160))))]
    body, content_type = multipart({"reference": "PORT-1"}, cases)
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    with closing(tls(proxy.https_port, 60)) as connection:
        connection.request("POST", "/api/v1/cases", body=body, headers=headers)
        created = connection.getresponse()
        answer = created.read().decode()
    assert created.status == 201, answer
    assert f'"url":"{origin}/cases/' in answer.replace(" ", "")

    # Plain HTTP is sent to the HTTPS port the clients use.
    with closing(http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)) as plain:
        plain.request("GET", "/cases/?page=2", headers={"Host": f"127.0.0.1:{proxy.http_port}"})
        moved = plain.getresponse()
        moved.read()
    assert moved.status == 301
    assert moved.getheader("Location") == f"{origin}/cases/?page=2"


def test_a_photographs_body_is_held_in_memory_and_a_whole_case_is_written_to_disk(
    server: GunicornServer, proxy: Proxy
) -> None:
    token = server.token
    # A photograph near its 50 MB limit: nginx holds it in memory while it arrives.
    assert _post_bytes(proxy.https_port, token, 45 * 2**20) in (413, 415, 422)
    assert BUFFERED_TO_DISK not in proxy.log()
    # A case sent whole, over 51 MB: nginx writes it to its temporary folder (the README
    # says so; the compose bundle mounts that folder in memory).
    assert _post_bytes(proxy.https_port, token, 80 * 2**20, "/api/v1/cases") < 500
    assert BUFFERED_TO_DISK in proxy.log()


@dataclass(frozen=True)
class Reply:
    status: int
    location: str
    body: str


class Browser:
    """A browser's side of the conversation over TLS: its cookies, and a Referer on posts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def get(self, path: str) -> str:
        reply = self._send("GET", path, None, {})
        assert reply.status == 200, reply
        return reply.body

    def post_form(self, path: str, form: dict[str, str], referer: str) -> Reply:
        body = urlencode(form).encode()
        return self.post(path, body, "application/x-www-form-urlencoded", referer)

    def post(self, path: str, body: bytes, content_type: str, referer: str) -> Reply:
        return self._send("POST", path, body, {"Content-Type": content_type, "Referer": referer})

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        connection = tls(self.port, 60)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            answer = response.read().decode(errors="replace")
            return Reply(response.status, response.getheader("Location") or "", answer)
        finally:
            connection.close()


def _post_bytes(port: int, token: str, size: int, path: str = "/api/v1/predict") -> int:
    """The status of a multipart post of ``size`` bytes of one file through the proxy."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = (
        head
        + b"\xff\xd8\xff"
        + b"\0" * (size - len(head) - 64)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Authorization": f"Bearer {token}",
    }
    with closing(tls(port, 120)) as connection:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
    return response.status


def _status(port: int, path: str, source: str = "127.0.0.1") -> int:
    connection = tls(port, 10, source=source)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition`` holds within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _head(connect, path: str) -> dict[str, str]:
    connection = connect(10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def _raw(port: int, request: bytes) -> bytes:
    context = ssl._create_unverified_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(request)
        chunks = []
        while True:
            data = tls.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)
