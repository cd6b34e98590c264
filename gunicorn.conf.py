"""Gunicorn settings for serving the classifier (read by `gunicorn --config gunicorn.conf.py`).

Environment variables (all optional):
  PORT                    port to listen on (default 8000)
  HOST                    interface to listen on (default 0.0.0.0, all interfaces)
  BIND                    full bind address, overrides HOST/PORT (e.g. "127.0.0.1:9000")
  WEB_CONCURRENCY         worker processes (default: usable CPUs, at most 4)
  GUNICORN_THREADS        request threads per worker (default 4)
  GUNICORN_TIMEOUT        seconds a worker may stay silent before it is killed (default 120;
                          it also bounds model loading, which happens in each worker)
  GUNICORN_MAX_REQUESTS   recycle a worker after this many requests, +-10% (default 5000; 0: never)
  TF_NUM_INTRAOP_THREADS  TensorFlow threads per op in each worker (default: CPUs / workers)
  TF_NUM_INTEROP_THREADS  TensorFlow ops run in parallel in each worker (default 1)
  GUNICORN_PARALLEL_BOOTS how many workers may load their models at once (default CPUs / 2)
  PROMETHEUS_MULTIPROC_DIR  where workers share metrics; default: a fresh temp dir per start
  LOG_LEVEL               debug, info (default), warning or error
  IMAGE_THREADS           threads per worker for per-image work (default: CPUs / workers)
  IMAGE_PROCESSES         processes per worker reading a case's photographs (default: CPUs, <= 4)
  SECRET_KEY              made here, once for all workers, outside production when unset
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path


def _usable_cpus() -> int:
    # Affinity respects taskset/cpuset limits; os.cpu_count() would not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


CPUS = _usable_cpus()

bind = [os.environ.get("BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{_env_int('PORT', 8000)}"]

# Capped at 4: each worker holds its own TensorFlow and models; threads overlap I/O and inference.
workers = _env_int("WEB_CONCURRENCY", min(CPUS, 4))
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)

# TensorFlow and fork() do not mix: load the app and its models in each worker after fork.
preload_app = False

timeout = _env_int("GUNICORN_TIMEOUT", 120)
graceful_timeout = 30
keepalive = 5
# Workers are replaced now and then (at staggered counts), so no slow creep of memory lasts.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10

# Heartbeat files on tmpfs: a disk-backed /tmp in containers can stall workers.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

# Logs: one JSON object per line on stdout, from every Python logger. The app writes one
# line per request (method, path without its query string, status, latency, request id;
# no client address), so gunicorn's own access log, which has both, is off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
_LEVEL = loglevel.upper()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": _LEVEL, "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": _LEVEL, "handlers": ["stdout"], "propagate": False},
        "gunicorn.access": {"level": _LEVEL, "handlers": [], "propagate": False},
        "alembic": {"level": "WARNING"},
    },
}

# Workers share the CPUs so their TensorFlow threads do not oversubscribe the machine.
TF_INTRAOP_THREADS = _env_int("TF_NUM_INTRAOP_THREADS", max(1, CPUS // max(1, workers)))
TF_INTEROP_THREADS = _env_int("TF_NUM_INTEROP_THREADS", 1)
os.environ["TF_NUM_INTRAOP_THREADS"] = str(TF_INTRAOP_THREADS)
os.environ["TF_NUM_INTEROP_THREADS"] = str(TF_INTEROP_THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(TF_INTRAOP_THREADS))

# Each worker runs a pool of image threads (app/core/parallel.py): share the CPUs likewise.
os.environ.setdefault("IMAGE_THREADS", str(max(1, CPUS // max(1, workers))))

# One session key for every worker (a key each would fail the others' forms). Production
# must be given one: the app refuses to start without it.
if not os.environ.get("SECRET_KEY") and os.environ.get("APP_ENV") != "production":
    os.environ["SECRET_KEY"] = secrets.token_hex(32)

# Workers write metrics here for /metrics to add up; set before any worker imports the client.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")
    # Remembered in the environment so a config reload (SIGHUP) still knows it is ours.
    os.environ["GUNICORN_OWN_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
_OWN_METRICS_DIR = os.environ.get("GUNICORN_OWN_METRICS_DIR") == str(METRICS_DIR)


def on_starting(server) -> None:
    # Stale files from an earlier run would be added to this run's counters.
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


# Loading is CPU-bound: a few workers at a time get the first one serving sooner.
PARALLEL_BOOTS = _env_int("GUNICORN_PARALLEL_BOOTS", max(1, CPUS // 2))


def _acquire_boot_slot(worker) -> int:
    """Block until one of PARALLEL_BOOTS lock files is ours; returns its fd.

    flock() is released when the fd closes, also when the worker dies while loading."""
    import fcntl
    import time

    while True:
        for slot in range(PARALLEL_BOOTS):
            fd = os.open(METRICS_DIR / f"boot-{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        worker.notify()  # waiting is not hanging: keep the master's timeout away
        time.sleep(0.1)


def post_fork(server, worker) -> None:
    # Runs in the new worker before the app (and TensorFlow's runtime) starts there.
    import logging
    import time

    import app.core  # noqa: F401  (the core's TensorFlow settings, before TensorFlow loads)
    from app.core.native_log import native_stderr_logged

    worker.boot_slot = _acquire_boot_slot(worker)
    # TensorFlow's native code prints its first lines before its logging is set up.
    with native_stderr_logged(logging.getLogger("tensorflow")):
        import tensorflow as tf

    worker.forked_at = time.monotonic()
    tf.config.threading.set_intra_op_parallelism_threads(TF_INTRAOP_THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(TF_INTEROP_THREADS)


def post_worker_init(worker) -> None:
    # create_app loads no model: load and warm them here, before this worker takes requests.
    import time

    from app.web.warmup import warm_up

    try:
        set_aside = warm_up(worker.wsgi)
    finally:
        if getattr(worker, "boot_slot", None) is not None:
            os.close(worker.boot_slot)
            worker.boot_slot = None
    elapsed = time.monotonic() - getattr(worker, "forked_at", time.monotonic())
    worker.log.info(
        "Worker ready (pid: %s): models loaded in %.1f s, %d objects set aside from the "
        "garbage collector",
        worker.pid,
        elapsed,
        set_aside,
    )


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
