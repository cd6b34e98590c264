"""The container recipe: hadolint, what the image holds, and its CMD run for real.

No Docker engine runs here, so the image is never built; instead the Dockerfile's
CMD is run exactly as written from the project root with the Dockerfile's ENV
(plus a SECRET_KEY and a loopback port), and answers a real prediction over HTTP.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from app.classes import CLASS_IDS
from benchmarks.serve_bench import (
    Client,
    GunicornServer,
    effective_models_dir,
    get,
    models_in,
    smear_images,
    synth_images,
)

ROOT = Path(__file__).resolve().parents[1]
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
        args = args[args.index("CMD ") + 4:]
    return json.loads(args)


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _ignore_pattern_matches(path: str, pattern: str) -> bool:
    # Docker leaves out a path when the path itself or any folder above it matches.
    parts = path.split("/")
    if pattern.startswith("**/"):
        n = len(parts)
        spans = ["/".join(parts[i:j]) for i in range(n) for j in range(i + 1, n + 1)]
        return any(fnmatch.fnmatchcase(span, pattern[3:]) for span in spans)
    return any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts)))


def dockerignored(path: str) -> bool:
    """Whether the build context leaves ``path`` out (.dockerignore, last match wins)."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        if _ignore_pattern_matches(path, pattern.lstrip("!").rstrip("/")):
            ignored = not negate
    return ignored


def test_hadolint_finds_nothing():
    assert HADOLINT.exists(), "hadolint missing: pip install -r requirements-dev.txt"
    done = subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "style",
                           str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


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
    assert copied == {"requirements.txt", "app/", "models/", "static/", "templates/",
                      "wsgi.py", "gunicorn.conf.py"}
    user = [a for k, a in steps if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert dockerfile_env()["APP_ENV"] == "production"
    assert ("EXPOSE", "8000") in steps
    assert exec_form("CMD") == ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]
    assert "/readyz" in " ".join(exec_form("HEALTHCHECK"))


@pytest.mark.parametrize("path, ignored", [
    ("app/api.py", False), ("models/lenet.keras", False), ("models/lenet.json", False),
    ("models/lenet.ood.npz", False), ("models/split.csv", True), ("wsgi.py", False),
    ("gunicorn.conf.py", False), ("requirements.txt", False), ("templates/index.html", False),
    ("training/train.py", True), ("tests/test_deploy.py", True), (".venv/bin/python", True),
    (".git/HEAD", True), ("benchmarks/serve_bench.py", True), ("app/__pycache__/x.pyc", True),
    ("taleqani-all/original/Pro/x.jpg", True), ("requirements-dev.txt", True),
])
def test_build_context_holds_only_what_serving_needs(path, ignored):
    assert dockerignored(path) is ignored


def gunicorn_settings(**env: str) -> dict:
    """gunicorn.conf.py evaluated in a clean subprocess with ``env`` (it sets os.environ)."""
    code = ("import json, os, runpy; c = runpy.run_path('gunicorn.conf.py'); "
            "keys = ('bind', 'workers', 'threads', 'worker_class', 'preload_app', 'accesslog', "
            "'timeout', 'graceful_timeout', 'TF_INTRAOP_THREADS', 'CPUS', 'PARALLEL_BOOTS'); "
            "out = {k: c[k] for k in keys}; "
            "out['metrics_dir'] = os.environ['PROMETHEUS_MULTIPROC_DIR']; "
            "out['metrics_dir_exists'] = os.path.isdir(out['metrics_dir']); "
            "c['on_exit'](None); out['removed_on_exit'] = not os.path.isdir(out['metrics_dir']); "
            "print(json.dumps(out))")
    base = {k: v for k, v in os.environ.items()
            if k not in ("PORT", "HOST", "BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS",
                         "GUNICORN_PARALLEL_BOOTS",
                         "TF_NUM_INTRAOP_THREADS", "PROMETHEUS_MULTIPROC_DIR",
                         "GUNICORN_OWN_METRICS_DIR")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_gunicorn_defaults_follow_the_machine():
    conf = gunicorn_settings()
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert conf["worker_class"] == "gthread" and conf["preload_app"] is False
    assert conf["accesslog"] == "-"
    assert conf["workers"] == min(conf["CPUS"], 4) and conf["threads"] >= 2
    assert conf["TF_INTRAOP_THREADS"] == max(1, conf["CPUS"] // conf["workers"])
    assert conf["graceful_timeout"] > 0 and conf["timeout"] >= 60
    assert conf["PARALLEL_BOOTS"] == max(1, conf["CPUS"] // 2)
    assert conf["metrics_dir_exists"] and conf["removed_on_exit"]


def test_gunicorn_settings_from_the_environment():
    conf = gunicorn_settings(PORT="9123", HOST="127.0.0.1", WEB_CONCURRENCY="3",
                             GUNICORN_THREADS="7", TF_NUM_INTRAOP_THREADS="2",
                             GUNICORN_PARALLEL_BOOTS="3")
    assert conf["bind"] == ["127.0.0.1:9123"]
    assert (conf["workers"], conf["threads"], conf["TF_INTRAOP_THREADS"]) == (3, 7, 2)
    assert conf["PARALLEL_BOOTS"] == 3
    assert gunicorn_settings(BIND="unix:/tmp/x.sock", PORT="1")["bind"] == ["unix:/tmp/x.sock"]


# ---------------------------------------------------------------- the CMD, run for real


@pytest.fixture(scope="module")
def served():
    models_dir = effective_models_dir()
    if not models_in(models_dir):
        pytest.skip(f"no trained models in {models_dir} (set MODELS_DIR)")
    env = {**dockerfile_env(), "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"}
    server = GunicornServer(env=env, cmd=exec_form("CMD")).start()
    try:
        server.wait_ready(timeout=240)
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]


def check_prediction(server: GunicornServer, image: bytes) -> dict:
    status, body = Client(server.port).predict(image)
    assert status == 200, body[:500]
    result = json.loads(body)
    assert result["class"] in CLASS_IDS
    assert set(result["probabilities"]) == set(CLASS_IDS)
    assert abs(sum(result["probabilities"].values()) - 1.0) < 1e-4
    assert result["class"] == max(result["probabilities"], key=result["probabilities"].get)
    assert result["model"]["name"] and result["model"]["version"]
    return result


def test_cmd_serves_a_prediction(served):
    result = check_prediction(served, synth_images(1)[0])
    status, metrics = get(served.port, "/metrics")
    assert status == 200
    model = result["model"]["name"]
    assert f'prediction_latency_seconds_count{{model="{model}"}} 1.0' in metrics.decode()
    assert '"path":"/api/v1/predict"' in served.log()  # the JSON request log reached stdout


@pytest.mark.data
@pytest.mark.skipif(not os.environ.get("ALL_DATA_DIR"), reason="ALL_DATA_DIR is not set")
def test_cmd_serves_a_prediction_for_a_real_smear(served):
    check_prediction(served, smear_images(os.environ["ALL_DATA_DIR"], 1)[0])


def test_healthcheck_command_passes_when_ready(served):
    env = {**os.environ, "PORT": str(served.port)}
    done = subprocess.run(exec_form("HEALTHCHECK"), env=env, capture_output=True, timeout=30,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_healthcheck_command_fails_without_a_server():
    from benchmarks.serve_bench import free_port

    env = {**os.environ, "PORT": str(free_port())}
    done = subprocess.run(exec_form("HEALTHCHECK"), env=env, capture_output=True, timeout=30)
    assert done.returncode != 0


def test_production_refuses_to_start_without_secret_key():
    env = {**dockerfile_env(), "WEB_CONCURRENCY": "1", "SECRET_KEY": ""}
    server = GunicornServer(env=env, cmd=exec_form("CMD")).start()
    try:
        code = server.proc.wait(timeout=240)
    finally:
        server.stop()
    assert code != 0
    assert "SECRET_KEY" in server.log()
