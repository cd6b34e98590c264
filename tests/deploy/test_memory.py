"""A worker's memory: what one upload within the limits costs at its peak, what a request
with many photographs costs (no more: they are decoded in groups), what an upload over the
limits costs (nothing: 413 from the header), and that mixed requests (1,000 after 100 of
warm-up at full size, ``make soak``; a share of them, SOAK_SCALE, in ``make test``) leave the
worker's memory where warm-up left it."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.core.model_files import model_names
from tests.support.images import ImageFactory, smear_images
from tests.support.models import DEFAULT_AND_LENET, data_root, served_models_dir
from tests.support.server import GunicornServer, multipart, rss_bytes
from tests.support.soak import scaled

pytestmark = pytest.mark.slow

PEAK_LIMIT_MB = 300
GROWTH_LIMIT = 0.10


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for {pid}")


def rss_mb(pid: int) -> float:
    return rss_bytes(pid) / 2**20


def reset_peak(pid: int) -> None:
    """The kernel's peak RSS starts again from the current RSS (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def encoded(array: np.ndarray, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **options)
    return buf.getvalue()


@functools.cache  # made once: several tests send them
def camera_files() -> dict[str, bytes]:
    """What microscope cameras write, at the limits (24 MP, up to 50 MB): a real smear
    enlarged to that size when the data set is at hand (so it is analysed through to the
    explanation), with sensor noise so the files are as big as real ones."""
    rng = np.random.default_rng(0)
    root = data_root()
    if root is not None and root.is_dir():
        smear = Image.open(io.BytesIO(smear_images(root, 1)[0])).convert("RGB")
        colour = np.asarray(smear.resize((6000, 4000), Image.Resampling.BILINEAR))
        colour = np.clip(colour + rng.normal(0, 3, colour.shape), 0, 255).astype(np.uint8)
    else:
        colour = rng.integers(120, 230, (4000, 6000, 3), dtype=np.uint8)
    grey16 = colour.mean(axis=2).astype(np.uint16) * 257 + rng.integers(0, 256, (4000, 6000))
    return {
        "24 MP JPEG": encoded(colour, "JPEG", quality=92),
        "12 MP uncompressed TIFF": encoded(colour[:3000, :4000], "TIFF"),
        "24 MP 16-bit PNG": encoded(grey16.astype(np.uint16), "PNG", compress_level=1),
        "24 MP PNG with transparency": encoded(smooth_smear((6000, 4000), "RGBA"), "PNG"),
        "12 MP WebP": encoded(smooth_smear((4000, 3000)), "WEBP", quality=5),
    }


def smooth_smear(size: tuple[int, int], mode: str = "RGB") -> np.ndarray:
    """A synthetic smear enlarged to ``size``: it passes the scale check, so its pixels are
    held through the model pass, and it compresses to a small file (a 12 MP WebP: 70 KB)."""
    small = ImageFactory.smear((size[0] // 10, size[1] // 10), seed=1)
    return np.asarray(small.resize(size, Image.Resampling.BILINEAR).convert(mode))


@pytest.fixture(scope="module")
def worker() -> Iterator[tuple[GunicornServer, int]]:
    if not model_names(served_models_dir()):
        pytest.skip("no trained models")
    env = {"APP_ENV": "production", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"}
    server = GunicornServer(env=env, models=DEFAULT_AND_LENET).start()
    try:
        server.wait_ready(timeout=300)
        [pid] = server.wait_all_workers_ready(1, timeout=300)
        yield server, pid
    finally:
        server.stop()


def post(server: GunicornServer, data: bytes, name: str) -> int:
    body, content_type = multipart({"model": "lenet"}, {"image": (name, data)})
    with server.client(timeout=120) as client:
        status, _ = client.request("POST", "/api/v1/predict?explain=1", body, content_type)
    return status


def raised_by(
    server: GunicornServer, pid: int, path: str, body: bytes, ctype: str
) -> tuple[float, int, Any]:
    """MB by which one request raises the worker's peak memory, its status and its answer."""
    reset_peak(pid)
    before = rss_mb(pid)
    with server.client(timeout=300) as client:
        status, answer = client.request("POST", path, body, ctype)
    assert status < 500, (path, status, answer[:300])
    return peak_rss_mb(pid) - before, status, json.loads(answer)


def parts(field: str, data: bytes, n: int) -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, (f"{i}.webp", data)) for i in range(n)]


def test_many_photographs_in_one_request_cost_what_one_does(worker) -> None:
    # First in the module: the worker has seen only warm-up, so no freed memory it keeps
    # from a bigger request hides what this one costs.
    server, pid = worker
    warm = ImageFactory().make("PNG", size=(224, 224))
    for _ in range(3):
        assert post(server, warm, "warm.png") == 200
    # The request: 16 WebP parts of 24 MP each; WebP decodes at twice the memory of
    # other formats, so over 12 MP it is refused from its header.
    huge = encoded(smooth_smear((6000, 4000)), "WEBP", quality=5)
    body, ctype = multipart({"model": "lenet"}, parts("image", huge, 16))
    raised, status, answer = raised_by(server, pid, "/api/v1/predict", body, ctype)
    print(f"predict, 16 x 24 MP WebP: peak +{raised:.0f} MB")
    assert raised < PEAK_LIMIT_MB
    assert status == 200
    assert len(answer) == 16
    assert all(a["error"]["code"] == "image_too_large" for a in answer), answer[0]
    # The largest WebP accepted, 16 times: each is decoded, held through the model pass and
    # answered, one group after another.
    big = encoded(smooth_smear((4000, 3000)), "WEBP", quality=5)
    body, ctype = multipart({"model": "lenet"}, parts("image", big, 16))
    raised, status, answer = raised_by(server, pid, "/api/v1/predict", body, ctype)
    print(f"predict, 16 x 12 MP WebP: peak +{raised:.0f} MB")
    assert raised < PEAK_LIMIT_MB
    assert status == 200
    assert all("probabilities" in a for a in answer), answer[0]
    body, ctype = multipart({"reference": "MEM-1", "model": "lenet"}, parts("images", big, 16))
    raised, status, answer = raised_by(server, pid, "/api/v1/cases", body, ctype)
    print(f"a case of 16 x 12 MP WebP: peak +{raised:.0f} MB")
    assert raised < PEAK_LIMIT_MB
    assert status == 201
    assert len(answer["images"]) == 16


def test_one_upload_within_the_limits_costs_under_300_mb(worker) -> None:
    server, pid = worker
    small = ImageFactory().make("PNG", size=(224, 224))
    for _ in range(3):
        assert post(server, small, "warm.png") == 200
    for name, data in camera_files().items():
        assert len(data) <= 50 * 1024 * 1024, name
        reset_peak(pid)
        before = rss_mb(pid)
        status = post(server, data, name)
        assert status < 500, (name, status)
        raised = peak_rss_mb(pid) - before
        print(f"{name}: {len(data) >> 20} MB file, status {status}, peak +{raised:.0f} MB")
        assert raised < PEAK_LIMIT_MB, (name, raised)


def test_an_upload_over_the_limits_is_refused_from_its_header(worker) -> None:
    server, pid = worker
    # 77 KB of 16-bit PNG declaring 6300 x 6300 (40 MP), and 692 bytes of JPEG declaring 36 MP.
    big_png = encoded(np.zeros((6300, 6300), np.uint16), "PNG")
    big_jpeg = encoded(np.zeros((6000, 6000, 3), np.uint8), "JPEG", quality=1)
    for name, data in {"40 MP PNG": big_png, "36 MP JPEG": big_jpeg}.items():
        reset_peak(pid)
        before = rss_mb(pid)
        assert post(server, data, name) == 413
        assert peak_rss_mb(pid) - before < 50, name


@pytest.mark.soak
def test_memory_after_many_mixed_requests_is_where_warm_up_left_it(worker) -> None:
    server, pid = worker
    factory = ImageFactory()
    small = [factory.make(fmt, size=(224, 224), seed=i) for i, fmt in enumerate(("PNG", "JPEG"))]
    big = camera_files()["24 MP JPEG"]
    bad = b"not an image at all"

    def mixed(i: int) -> tuple[bytes, str]:
        if i % 50 == 0:
            return big, "big.jpg"
        if i % 10 == 7:
            return bad, "bad.png"
        return small[i % 2], "small.png"

    for i in range(scaled(100, least=50)):
        post(server, *mixed(i))
    warm = rss_mb(pid)
    statuses = [post(server, *mixed(i)) for i in range(scaled(1000, least=100))]
    after = rss_mb(pid)
    print(f"RSS after warm-up {warm:.0f} MB, after {len(statuses)} more requests {after:.0f} MB")
    assert all(s < 500 for s in statuses)
    assert after <= warm * (1 + GROWTH_LIMIT), (warm, after)
