"""Debian's nginx, run from a test with the deployment's own server configuration
(deploy/nginx/templates), rendered as nginx's image renders it, and a self-signed certificate."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.models import ROOT
from tests.support.server import free_port

TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"
ERROR_PAGES = ROOT / "deploy" / "nginx" / "html"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def render(template: str, values: dict[str, str]) -> str:
    """``${NAME}`` replaced as envsubst does in nginx's image; nginx's own ``$vars`` kept."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], template)


@dataclass
class Proxy:
    https_port: int
    http_port: int
    folder: Path

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def configure(folder: Path, upstream_port: int) -> tuple[Path, Proxy]:
    """nginx.conf in ``folder`` around the rendered deployment server blocks."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777)  # nginx's workers run as nobody when the tests run as root
    cert, key = self_signed(folder)
    os.chmod(key, 0o644)
    proxy = Proxy(https_port=free_port(), http_port=free_port(), folder=folder)
    servers = render(
        TEMPLATE.read_text(),
        {
            "APP_UPSTREAM": f"127.0.0.1:{upstream_port}",
            "HTTP_PORT": f"127.0.0.1:{proxy.http_port}",
            "HTTPS_PORT": f"127.0.0.1:{proxy.https_port}",
            "PUBLIC_HTTPS_PORT": str(proxy.https_port),
            "TLS_CERT": str(cert),
            "TLS_KEY": str(key),
            "PROXY_ERROR_ROOT": str(ERROR_PAGES),
        },
    )
    (folder / "servers.conf").write_text(servers)
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o777)
    conf = folder / "nginx.conf"
    # As root, the workers would run as nobody, who cannot reach a folder under the tests'
    # own temporary folders (a body written to client_body_temp_path failed with a 500).
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {folder}/servers.conf;
}}
"""
    )
    return conf, proxy


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t``: nginx's own check of the configuration."""
    binary = nginx_binary()
    assert binary is not None
    return subprocess.run(
        [binary, "-t", "-c", str(conf), "-p", str(conf.parent)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@contextmanager
def running_nginx(folder: Path, upstream_port: int) -> Iterator[Proxy]:
    conf, proxy = configure(folder, upstream_port)
    binary = nginx_binary()
    assert binary is not None
    with (folder / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", proxy.https_port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None:
                    said = (folder / "stderr.log").read_text(errors="replace")
                    raise RuntimeError(f"nginx exited: {said}") from None
                time.sleep(0.05)
        yield proxy
    finally:
        process.terminate()
        process.wait(timeout=20)
