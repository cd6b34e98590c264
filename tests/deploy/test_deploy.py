"""The container recipe: hadolint, what the image holds, and its CMD run for real.

No Docker engine runs here, so the image is never built; instead the Dockerfile's
CMD is run exactly as written from the project root with the Dockerfile's ENV
(plus a SECRET_KEY and a loopback port), and answers a real prediction over HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from docker.utils.build import tar

from app.core.classes import CLASS_IDS
from app.core.model_files import model_names
from tests.support.images import smear_images, synth_images
from tests.support.models import ROOT, served_models_dir
from tests.support.server import GunicornServer, free_port

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(instruction: str) -> list[str]:
    """The JSON (exec form) argument list of the last ``instruction`` (CMD or HEALTHCHECK)."""
    args = [a for k, a in instructions() if k == instruction][-1]
    if instruction == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4 :]
    return json.loads(args)


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def build_context(root: Path) -> list[str]:
    """The files a ``docker build`` of ``root`` sends, as Docker's own client packs them."""
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    with tempfile.TemporaryFile() as archive:
        tar(root, exclude=patterns, fileobj=archive)  # rewinds the file when done
        with tarfile.open(fileobj=archive) as packed:
            return sorted(m.name for m in packed.getmembers() if m.isfile())


def test_hadolint_finds_nothing():
    assert HADOLINT.exists(), "hadolint missing: pip install -r requirements-dev.txt"
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip(), done.stdout + done.stderr


def test_image_layout():
    steps = instructions()
    keywords = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    copies = [a for k, a in steps if k == "COPY"]
    # Requirements are installed in a layer of their own, before any code is copied.
    assert copies[0] == "requirements.txt ."
    pip = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "-r requirements.txt" in a)
    first_code = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and a.startswith("app/"))
    assert pip < first_code
    copied = {src for a in copies for src in a.split()[:-1]}
    assert copied == {
        "requirements.txt",
        "app/",
        "models/",
        "static/",
        "templates/",
        "wsgi.py",
        "gunicorn.conf.py",
    }
    user = [a for k, a in steps if k == "USER"]
    assert user
    assert user[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert dockerfile_env()["APP_ENV"] == "production"
    # The records live in the /data volume, which the unprivileged user owns.
    assert dockerfile_env()["DATABASE_URL"] == "sqlite:////data/cases.sqlite3"
    assert ("VOLUME", '["/data"]') in steps
    assert ("EXPOSE", "8000") in steps
    assert exec_form("CMD") == ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]
    assert "/readyz" in " ".join(exec_form("HEALTHCHECK"))


SERVING_FILES = {"requirements.txt", "wsgi.py", "gunicorn.conf.py"}
SERVING_FOLDERS = ("app/", "models/", "static/", "templates/")


def test_build_context_of_the_project_holds_what_serving_needs():
    sent = build_context(ROOT)
    assert SERVING_FILES | {"Dockerfile", ".dockerignore"} <= set(sent)
    assert "app/core/service.py" in sent
    assert "app/web/api/routes.py" in sent
    assert "templates/result.html" in sent
    assert "static/style.css" in sent
    for name in model_names(ROOT / "models"):
        files = {f"models/{name}{suffix}" for suffix in (".keras", ".json", ".ood.npz")}
        assert files <= set(sent)
    stray = [
        p
        for p in sent
        if not p.startswith(SERVING_FOLDERS)
        and p not in SERVING_FILES | {"Dockerfile", ".dockerignore"}
    ]
    assert not stray, stray
    assert "models/split.csv" not in sent
    assert not [p for p in sent if p.startswith("models/blocks/")]
    assert not [p for p in sent if "__pycache__" in p or p.endswith(".pyc")]


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("app/web/api/routes.py", True),
        ("models/lenet.keras", True),
        ("models/lenet.json", True),
        ("models/lenet.ood.npz", True),
        ("models/split.csv", False),
        ("wsgi.py", True),
        ("gunicorn.conf.py", True),
        ("requirements.txt", True),
        ("templates/index.html", True),
        ("training/train.py", False),
        ("tests/deploy/test_deploy.py", False),
        (".venv/bin/python", False),
        (".git/HEAD", False),
        ("benchmarks/serve_bench.py", False),
        ("app/__pycache__/x.pyc", False),
        ("app/core/__pycache__/x.cpython-311.pyc", False),
        ("taleqani-all/original/Pro/x.jpg", False),
        ("requirements-dev.txt", False),
    ],
)
def test_build_context_leaves_out_what_serving_does_not_need(tmp_path: Path, path: str, sent: bool):
    for name in ("Dockerfile", ".dockerignore"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_bytes(b"x")
    assert (path in build_context(tmp_path)) is sent


def gunicorn_settings(cpus: int | None = None, **env: str) -> dict[str, Any]:
    """gunicorn.conf.py evaluated in a clean subprocess with ``env`` (it sets os.environ),
    allowed to run on the first ``cpus`` CPUs of this machine only, when given."""
    code = (
        "import json, os, runpy; c = runpy.run_path('gunicorn.conf.py'); "
        "keys = ('bind', 'workers', 'threads', 'worker_class', 'preload_app', 'accesslog', "
        "'timeout', 'graceful_timeout', 'TF_INTRAOP_THREADS', 'CPUS', 'PARALLEL_BOOTS', "
        "'max_requests', 'max_requests_jitter'); "
        "out = {k: c[k] for k in keys}; "
        "out['metrics_dir'] = os.environ['PROMETHEUS_MULTIPROC_DIR']; "
        "out['metrics_dir_exists'] = os.path.isdir(out['metrics_dir']); "
        "c['on_exit'](None); out['removed_on_exit'] = not os.path.isdir(out['metrics_dir']); "
        "print(json.dumps(out))"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "PORT",
            "HOST",
            "BIND",
            "WEB_CONCURRENCY",
            "GUNICORN_THREADS",
            "GUNICORN_PARALLEL_BOOTS",
            "TF_NUM_INTRAOP_THREADS",
            "PROMETHEUS_MULTIPROC_DIR",
            "GUNICORN_OWN_METRICS_DIR",
        )
    }
    allowed = sorted(os.sched_getaffinity(0))[:cpus] if cpus else None

    def restrict() -> None:
        if allowed:
            os.sched_setaffinity(0, allowed)

    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=restrict,
    )
    return json.loads(done.stdout)


def test_gunicorn_defaults():
    conf = gunicorn_settings()
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert conf["worker_class"] == "gthread"
    assert conf["preload_app"] is False
    assert conf["accesslog"] is None  # the app's JSON request line is the access log
    assert conf["threads"] == 4
    assert conf["max_requests"] == 5000
    assert conf["max_requests_jitter"] == 500
    assert conf["graceful_timeout"] == 30
    assert conf["timeout"] == 120
    assert conf["metrics_dir_exists"]
    assert conf["removed_on_exit"]


# CPUs the process may use -> (workers, TensorFlow threads per worker, workers loading at once)
CPU_SHARES = {1: (1, 1, 1), 2: (2, 1, 1), 6: (4, 1, 3), 8: (4, 2, 4)}


@pytest.mark.parametrize("cpus", CPU_SHARES)
def test_gunicorn_shares_the_cpus_it_may_use(cpus: int):
    if len(os.sched_getaffinity(0)) < cpus:
        pytest.skip(f"this machine lets the tests use fewer than {cpus} CPUs")
    conf = gunicorn_settings(cpus=cpus)
    assert conf["CPUS"] == cpus
    assert (conf["workers"], conf["TF_INTRAOP_THREADS"], conf["PARALLEL_BOOTS"]) == CPU_SHARES[cpus]


def test_gunicorn_settings_from_the_environment():
    conf = gunicorn_settings(
        PORT="9123",
        HOST="127.0.0.1",
        WEB_CONCURRENCY="3",
        GUNICORN_THREADS="7",
        TF_NUM_INTRAOP_THREADS="2",
        GUNICORN_PARALLEL_BOOTS="3",
    )
    assert conf["bind"] == ["127.0.0.1:9123"]
    assert (conf["workers"], conf["threads"], conf["TF_INTRAOP_THREADS"]) == (3, 7, 2)
    assert conf["PARALLEL_BOOTS"] == 3
    assert gunicorn_settings(BIND="unix:/tmp/x.sock", PORT="1")["bind"] == ["unix:/tmp/x.sock"]


# ---------------------------------------------------------------- the CMD, run for real


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    models_dir = served_models_dir()
    if not model_names(models_dir):
        pytest.skip(f"no trained models in {models_dir} (set MODELS_DIR)")
    env = {**dockerfile_env(), "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"}
    # The image's /data volume, here a temporary folder standing in the same place in the URL.
    data = tmp_path_factory.mktemp("data")
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("////data/", f"///{data}/")
    env["IMAGE_STORE"] = env["IMAGE_STORE"].replace("/data", str(data), 1)
    server = GunicornServer(env=env, cmd=exec_form("CMD")).start()
    try:
        server.wait_ready(timeout=240)
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]


def check_prediction(server: GunicornServer, image: bytes) -> dict[str, Any]:
    with server.client() as client:
        status, body = client.predict(image)
    assert status == 200, body[:500]
    result = json.loads(body)
    assert result["class"] in CLASS_IDS
    assert set(result["probabilities"]) == set(CLASS_IDS)
    assert abs(sum(result["probabilities"].values()) - 1.0) < 1e-4
    assert result["class"] == max(result["probabilities"], key=result["probabilities"].get)
    assert result["model"]["name"]
    assert result["model"]["version"]
    return result


def test_cmd_serves_a_prediction(served):
    result = check_prediction(served, synth_images(1)[0])
    status, metrics = served.get("/metrics")
    assert status == 200
    model = result["model"]["name"]
    assert f'prediction_latency_seconds_count{{model="{model}"}} 1.0' in metrics.decode()
    assert '"path":"/api/v1/predict"' in served.log()  # the JSON request log reached stdout


@pytest.mark.data
@pytest.mark.skipif(not os.environ.get("ALL_DATA_DIR"), reason="ALL_DATA_DIR is not set")
def test_cmd_serves_a_prediction_for_a_real_smear(served):
    check_prediction(served, smear_images(os.environ["ALL_DATA_DIR"], 1)[0])


# TensorFlow's native code writes these two kinds of lines at import, before Python logging
# can reach it (absl is not initialised); everything else must be JSON.
def test_every_log_line_is_json_without_query_strings_or_addresses(served):
    status, _ = served.get("/api/v1/cases?reference=patient-jane-doe")
    assert status == 200
    lines = [line for line in served.log().splitlines() if line.strip()]
    # TensorFlow's native start-up lines too, each a record of the "tensorflow" logger.
    records = [json.loads(line) for line in lines]
    assert len(records) > 5
    assert all(isinstance(r, dict) for r in records)
    # The workers run TensorFlow on oneDNN's kernels (the core's setting), and say so in JSON.
    assert any(
        r.get("logger") == "tensorflow" and "oneDNN custom operations are on" in r["message"]
        for r in records
    )
    requests = [r for r in records if r.get("event") == "request"]
    assert any(r["path"] == "/api/v1/cases" for r in requests)
    # Each worker set what it loaded aside from the garbage collector once its models were warm.
    ready = [r["message"] for r in records if str(r.get("message", "")).startswith("Worker ready")]
    assert ready
    for message in ready:
        set_aside = re.search(r"(\d+) objects set aside from the garbage collector", message)
        assert set_aside is not None, message
        assert int(set_aside.group(1)) > 100_000
    text = served.log()
    assert "jane-doe" not in text
    assert "127.0.0.1 " not in text
    assert '"127.0.0.1"' not in text


def test_healthcheck_command_passes_when_ready(served):
    env = {**os.environ, "PORT": str(served.port)}
    done = subprocess.run(
        exec_form("HEALTHCHECK"), env=env, capture_output=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_healthcheck_command_fails_without_a_server():
    env = {**os.environ, "PORT": str(free_port())}
    done = subprocess.run(exec_form("HEALTHCHECK"), env=env, capture_output=True, timeout=30)
    assert done.returncode != 0


def test_production_refuses_to_start_without_secret_key():
    env = {**dockerfile_env(), "WEB_CONCURRENCY": "1", "SECRET_KEY": ""}
    server = GunicornServer(env=env, cmd=exec_form("CMD")).start()
    try:
        code = server.running().wait(timeout=240)
    finally:
        server.stop()
    assert code != 0
    assert "SECRET_KEY" in server.log()
