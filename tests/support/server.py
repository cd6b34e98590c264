"""A real gunicorn on a loopback port and a plain HTTP client for it.

Used by the deployment and load tests and by ``benchmarks/serve_bench.py``, so
all of them start and talk to the server the same way.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.models import ROOT, models_subset, served_models_dir

GUNICORN_CMD = ("gunicorn", "--config", "gunicorn.conf.py", "wsgi:app")


def multipart(
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes]] | list[tuple[str, tuple[str, bytes]]],
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type header value (a list of files may
    repeat a field name)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for name, (filename, data) in files.items() if isinstance(files, dict) else files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def predict_body(image: bytes, model: str | None) -> tuple[bytes, str]:
    return multipart({"model": model} if model else {}, {"image": ("smear.jpg", image)})


class Client:
    """One keep-alive HTTP connection (http.client); reconnects after a failure."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", timeout: float = 60.0, token: str = ""
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.token = token  # sent as a bearer token when set
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            payload = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, payload
        except Exception:
            self.close()
            raise

    def predict(self, image: bytes, model: str | None = None) -> tuple[int, bytes]:
        body, ctype = predict_body(image, model)
        return self.request("POST", "/api/v1/predict", body, ctype)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(port: int, path: str, timeout: float = 5.0, token: str = "") -> tuple[int, bytes]:
    client = Client(port, timeout=timeout, token=token)
    try:
        return client.request("GET", path)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children, else by scanning /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        found = [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]
        return sorted(set(found))
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        pass
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


@dataclass
class GunicornServer:
    """Runs ``cmd`` (the Dockerfile's CMD by default) from ``root`` on a loopback port."""

    env: dict[str, str] = field(default_factory=dict)
    cmd: Sequence[str] = GUNICORN_CMD
    root: Path = ROOT  # the project checkout the server runs from
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_path: Path | None = None
    _final_log: str = ""
    database_url: str = ""
    _token: str = ""
    # Serve only these models (None: every model of the models folder).
    models: tuple[str, ...] | None = None

    def start(self) -> GunicornServer:
        self.port = self.port or free_port()
        env = dict(os.environ)
        # A metrics dir from the caller's shell would mix runs; gunicorn.conf.py makes one.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("BIND", None)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("SECRET_KEY", secrets.token_hex(32))
        folder = served_models_dir() if self.models is None else models_subset(self.models)
        env["MODELS_DIR"] = str(folder)
        env.update(self.env)
        env.update(HOST="127.0.0.1", PORT=str(self.port))
        if "DATABASE_URL" not in self.env:
            # Its own case records, never the project's instance folder.
            records = Path(tempfile.mkdtemp(prefix="records-"))
            env["DATABASE_URL"] = f"sqlite:///{records / 'cases.sqlite3'}"
            env["IMAGE_STORE"] = str(records / "images")
        self.database_url = env["DATABASE_URL"]
        fd, name = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
        self.log_path = Path(name)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            list(self.cmd),
            cwd=self.root,
            env=env,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(fd)
        return self

    @property
    def token(self) -> str:
        """An admin API token, made (with the test users) in the server's database on first use;
        a server of an older checkout without accounts is never asked for one."""
        if not self._token:
            from tests.support.accounts import provision

            self._token = provision(self.database_url)
        return self._token

    def client(self, timeout: float = 60.0) -> Client:
        return Client(self.port, timeout=timeout, token=self.token)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return get(self.port, path, timeout=timeout, token=self.token)

    def running(self) -> subprocess.Popen[bytes]:
        """The gunicorn process; raises if the server was never started."""
        if self.proc is None:
            raise RuntimeError("the server was not started")
        return self.proc

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds from start until /readyz answered 200; raises on timeout or exit."""
        proc, deadline = self.running(), self.started_at + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{self.log()}")
            try:
                if get(self.port, "/readyz", timeout=2.0)[0] == 200:
                    return time.monotonic() - self.started_at
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"/readyz not 200 after {timeout:.0f} s:\n{self.log()[-4000:]}")

    def workers(self) -> list[int]:
        return proc_children(self.running().pid)

    def ready_workers(self) -> set[int]:
        """Worker pids that logged "Worker ready" (gunicorn.conf.py's post_worker_init)."""
        return {int(m) for m in re.findall(r"Worker ready \(pid: (\d+)\)", self.log())}

    def wait_all_workers_ready(self, n: int, timeout: float = 180.0) -> list[int]:
        """Wait until ``n`` live workers have loaded their models; returns their pids."""
        proc, deadline = self.running(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [pid for pid in self.workers() if pid in self.ready_workers()]
            if len(live) >= n:
                return live
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"{n} ready workers not seen in {timeout:.0f} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        """gunicorn's stdout and stderr so far (kept in memory once stopped)."""
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return self._final_log

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM (graceful) and wait; SIGKILL the group if it hangs. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.log_path is not None and self.log_path.exists():
            self._final_log = self.log()
            self.log_path.unlink()
        return self.proc.returncode
