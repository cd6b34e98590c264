"""The deployment's nginx in front of a real gunicorn: nginx's own check passes, and slow
clients that stop bare gunicorn do not stop the service behind the proxy."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.model_files import model_names
from tests.support.images import ImageFactory
from tests.support.models import served_models_dir
from tests.support.nginx import check, configure, nginx_binary, running_nginx
from tests.support.server import GunicornServer, predict_body

pytestmark = pytest.mark.slow

if nginx_binary() is None:
    pytest.skip("nginx is missing: apt-get install nginx (.ci/run does)", allow_module_level=True)

SLOW_CLIENTS = 32


def test_the_proxy_configuration_passes_nginx_t(tmp_path: Path) -> None:
    conf, _ = configure(tmp_path / "nginx", upstream_port=8000)
    done = check(conf)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr


@pytest.fixture(scope="module")
def server() -> Iterator[GunicornServer]:
    if not model_names(served_models_dir()):
        pytest.skip("no trained models")
    env = {"APP_ENV": "production", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4"}
    srv = GunicornServer(env=env).start()
    try:
        srv.wait_ready(timeout=300)
        srv.wait_all_workers_ready(1, timeout=300)
        yield srv
    finally:
        srv.stop()


class Drip:
    """Connections that send a POST's headers, then one byte of its body a second."""

    def __init__(self, port: int, tls: bool, count: int = SLOW_CLIENTS) -> None:
        self.port, self.tls, self.count = port, tls, count
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._drip, daemon=True) for _ in range(count)]

    def _drip(self) -> None:
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if self.tls:
                context = ssl._create_unverified_context()
                sock = context.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(
                b"POST /api/v1/predict HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
            )
            while not self.stop.wait(1.0):
                sock.sendall(b"x")
        except OSError:
            return  # dropped by the server: what a proxy should do
        finally:
            if sock is not None:
                sock.close()

    def __enter__(self) -> Drip:
        for thread in self.threads:
            thread.start()
        time.sleep(1.5)  # every connection is open and has sent its headers
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
    server: GunicornServer, tmp_path: Path
) -> None:
    image = ImageFactory().make("PNG", size=(160, 160))
    token = server.token

    def direct(timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)

    assert predict_seconds(direct, token, image, 10) < 1.0  # warm, and the service is fine
    with Drip(server.port, tls=False):
        blocked = predict_seconds(direct, token, image, 3.0)
    # The defect, measured: bare gunicorn's threads all wait on the slow uploads.
    assert blocked >= 3.0

    with running_nginx(tmp_path / "nginx", server.port) as proxy:

        def proxied(timeout: float) -> http.client.HTTPSConnection:
            return http.client.HTTPSConnection(
                "127.0.0.1",
                proxy.https_port,
                timeout=timeout,
                context=ssl._create_unverified_context(),
            )

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
