"""Awkward and hostile uploads, through the JSON API and the HTML form.

Every image here is synthesised in memory; none comes from the data set.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from app.web.security import InMemoryRequest
from tests.support.images import ImageFactory
from tests.support.server import multipart
from tests.support.uploads import post_upload

LIMIT = 50 * 1024 * 1024


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + chunk(b"IEND", b"")
    )


def exif_rotated(images) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    return images.encode(images.smear((80, 40)), "JPEG", exif=exif.tobytes())


def animated_gif(images) -> bytes:
    frames = [images.smear((64, 64), seed=i).convert("P") for i in range(3)]
    return images.encode(
        frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0
    )


def sixteen_bit_png(images) -> bytes:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I;16")
    return images.encode(image, "PNG")


def transparent_png(images) -> bytes:
    image = images.smear((64, 64)).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((64, 64)))
    return images.encode(image, "PNG")


def very_large_jpeg(images) -> bytes:
    # 6000x4000 = 24 MP, the limit; an upscaled smear, so the file stays small. It is
    # decoded at half size (draft mode) and reported at its own.
    image = images.smear((600, 400)).resize((6000, 4000), Image.Resampling.BILINEAR)
    return images.encode(image, "JPEG", quality=80)


Builder = Callable[[ImageFactory], bytes]

# name -> (builder(images) -> bytes, expected status, expected (width, height) or error code)
ACCEPTED: dict[str, tuple[Builder, tuple[int, int]]] = {
    "png_with_alpha": (transparent_png, (64, 64)),
    "grayscale_jpeg": (lambda im: im.make("JPEG", mode="L"), (96, 96)),
    "sixteen_bit_png": (sixteen_bit_png, (64, 64)),
    "palette_png": (lambda im: im.make("PNG", mode="P"), (96, 96)),
    "cmyk_jpeg": (lambda im: im.make("JPEG", mode="CMYK"), (96, 96)),
    "exif_rotated_jpeg": (exif_rotated, (40, 80)),
    "animated_gif": (animated_gif, (64, 64)),
    "small_png": (lambda im: im.make("PNG", size=(40, 40)), (40, 40)),
    "tiff": (lambda im: im.make("TIFF"), (96, 96)),
    "bmp": (lambda im: im.make("BMP"), (96, 96)),
    "webp": (lambda im: im.make("WEBP"), (96, 96)),
    "heic": (lambda im: im.make("HEIF"), (96, 96)),
    "very_large_6000x4000": (very_large_jpeg, (6000, 4000)),
}

REFUSED: dict[str, tuple[Builder, int, str]] = {
    "empty_file": (lambda im: b"", 422, "undecodable_image"),
    "one_pixel_png": (lambda im: im.make("PNG", size=(1, 1)), 422, "scale_unmeasurable"),
    "text_renamed_jpg": (lambda im: b"name,age\nx,1\n" * 20, 415, "unsupported_media_type"),
    "pdf": (
        lambda im: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n" * 10,
        415,
        "unsupported_media_type",
    ),
    "truncated_jpeg": (
        lambda im: im.make("JPEG", size=(200, 200))[:1500],
        422,
        "undecodable_image",
    ),
    "damaged_png_header": (lambda im: b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 422, "undecodable_image"),
    "decompression_bomb": (lambda im: png_declaring(100_000, 100_000), 413, "image_too_large"),
    "over_pixel_limit": (lambda im: png_declaring(8_000, 8_000), 413, "image_too_large"),
    "over_size_limit": (lambda im: b"\xff\xd8\xff" + b"\0" * LIMIT, 413, "payload_too_large"),
}


def api_post(client, data: bytes, filename: str = "upload.jpg", **form: str):
    return post_upload(client, "/api/v1/predict", data, filename, **form)


def form_post(client, token: str, data: bytes, filename: str = "upload.jpg"):
    return post_upload(client, "/analyze", data, filename, csrf_token=token)


@pytest.mark.parametrize("case", ACCEPTED)
def test_accepted_via_api(client, images, case: str) -> None:
    build, size = ACCEPTED[case]
    response = api_post(client, build(images), filename=f"{case}.jpg")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["image"]["width"], body["image"]["height"]) == size
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("case", [c for c in ACCEPTED if c != "very_large_6000x4000"])
def test_accepted_via_form(client, csrf_token, images, case: str) -> None:
    build, (width, height) = ACCEPTED[case]
    response = form_post(client, csrf_token, build(images))
    assert response.status_code == 303  # the result is a page of its own: reload sends nothing
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert f"{width}×{height} px" in page.get_data(as_text=True)


@pytest.mark.parametrize("case", REFUSED)
def test_refused_via_api(client, images, case: str) -> None:
    build, status, code = REFUSED[case]
    data = build(images)
    started = time.perf_counter()
    response = api_post(client, data)
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    assert "Traceback" not in error["message"]
    assert elapsed < 2.0, f"{case} took {elapsed:.2f}s to refuse"


@pytest.mark.parametrize("case", REFUSED)
def test_refused_via_form(client, csrf_token, images, case: str) -> None:
    build, status, _ = REFUSED[case]
    response = form_post(client, csrf_token, build(images))
    assert response.status_code == 303, status  # the API answers ``status``; the form redirects
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'role="alert"' in page
    assert 'id="upload-form"' in page
    assert "Traceback" not in page


def test_over_pixel_limit_names_the_size(client) -> None:
    response = api_post(client, png_declaring(8_000, 8_000), filename="big.png")
    assert response.status_code == 413
    assert "8000x8000" in response.get_json()["error"]["message"]


def test_bomb_is_refused_fast_with_clear_message(client) -> None:
    started = time.perf_counter()
    response = api_post(client, png_declaring(100_000, 100_000), filename="bomb.png")
    assert time.perf_counter() - started < 0.5
    assert response.status_code == 413
    message = response.get_json()["error"]["message"]
    assert "too many pixels" in message
    assert "limit is 24,000,000 pixels" in message


def test_path_traversal_filename_is_ignored(client, images, no_new_files) -> None:
    response = api_post(client, images.make(), filename="../../etc/passwd.png")
    assert response.status_code == 200
    assert "passwd" not in response.get_data(as_text=True)


def test_uploads_never_touch_the_disk(client, csrf_token, images, no_new_files) -> None:
    # Noisy pixels compress badly: over 1 MB, far over Werkzeug's 500 KB spool-to-disk size.
    noise = np.random.default_rng(1).integers(-24, 25, (900, 900, 3))
    smear = np.asarray(images.smear((900, 900)), dtype=np.int64) + noise
    big = images.encode(Image.fromarray(np.clip(smear, 0, 255).astype(np.uint8)), "PNG")
    assert len(big) > 1024 * 1024
    assert api_post(client, big).status_code == 200
    assert form_post(client, csrf_token, big).status_code == 303


def test_upload_stream_is_in_memory(app, images) -> None:
    from flask import request

    body, content_type = multipart({}, {"image": ("a.png", b"x" * (2 * 1024 * 1024))})
    with app.test_request_context(
        "/api/v1/predict", method="POST", data=body, content_type=content_type
    ):
        assert isinstance(request, InMemoryRequest)
        assert isinstance(request.files["image"].stream, io.BytesIO)


def test_unknown_model_and_wrong_method(client, images) -> None:
    response = api_post(client, images.make(), model="../../lenet")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unknown_model"
    response = client.get("/api/v1/predict")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    response = client.put("/api/v1/predict")
    assert response.status_code == 405


def test_empty_filename_and_missing_file(client, images) -> None:
    assert api_post(client, images.make(), filename="").status_code == 400
    response = client.post("/api/v1/predict", data={"model": "lenet"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_file"


def exif_block() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned a quarter
    exif[0x010F] = "Microscope camera"
    exif[0x8769] = {0x9003: "2026:01:01 09:00:00"}
    return exif.tobytes()


@pytest.mark.data
def test_damaged_exif_never_gives_a_server_error(client, smear_images) -> None:
    """A few hundred real smears re-saved with an EXIF block, bytes of which are flipped at
    random: each is analysed without its orientation or refused, never a 5xx."""
    import random
    import warnings

    rng = random.Random(2026)
    photos = [Image.open(p).convert("RGB") for paths in smear_images.values() for p in paths]
    raw = exif_block()
    statuses: dict[int, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about every corrupt block
        for i in range(300):
            fmt = ("JPEG", "WEBP", "PNG")[i % 3]
            buf = io.BytesIO()
            photos[i % len(photos)].save(buf, fmt, exif=raw)
            data = bytearray(buf.getvalue())
            # The block as written: with its "Exif" prefix (JPEG) or without (the others).
            block = raw if data.find(raw) >= 0 else raw[6:]
            start = data.find(block)
            assert start >= 0, fmt
            for _ in range(rng.randint(1, 12)):
                data[start + rng.randrange(len(block))] = rng.randrange(256)
            body, content_type = multipart({}, {"image": (f"f.{fmt.lower()}", bytes(data))})
            status = client.post(
                "/api/v1/predict", data=body, content_type=content_type
            ).status_code
            statuses[status] = statuses.get(status, 0) + 1
    assert all(s < 500 for s in statuses), statuses
    # JPEG and WebP are analysed without their orientation; PNG checks its chunks (422).
    assert statuses.get(200, 0) >= 150


def gif_frame_over_screen(images) -> bytes:
    """A GIF whose 8x8 black frame is larger than its 1x1 logical screen."""
    data = bytearray(images.encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", 1, 1)
    return bytes(data)


# Photographs with no cell to measure: each a 422 of its own, never a 500 for the case.
DEGENERATE: dict[str, Builder] = {
    "black_one_pixel_png": lambda im: im.encode(Image.new("1", (1, 1)), "PNG"),
    "one_by_23999999_png": lambda im: im.encode(Image.new("1", (1, 23_999_999)), "PNG"),
    "gif_frame_over_screen": gif_frame_over_screen,
}


def case_with(client, images, odd: bytes, url: str = "/api/v1/cases", **headers: str):
    good = [("images", (f"good-{i}.png", images.make(size=(160, 160), seed=i))) for i in range(2)]
    body, content_type = multipart({"reference": "EDGE-1"}, [*good, ("images", ("odd.png", odd))])
    return client.post(url, data=body, content_type=content_type, headers=headers)


@pytest.mark.parametrize("case", DEGENERATE)
def test_degenerate_image_is_refused_alone_in_a_case(client, images, case: str) -> None:
    response = case_with(client, images, DEGENERATE[case](images))
    assert response.status_code == 201, response.get_data(as_text=True)
    fields = {f["filename"]: f for f in response.get_json()["images"]}
    assert fields["odd.png"]["error"]["code"] == "scale_unmeasurable"
    assert "cells" in fields["odd.png"]["error"]["message"]
    assert all(fields[f"good-{i}.png"]["probabilities"] for i in range(2))


def test_degenerate_image_is_refused_alone_in_a_case_form(client, csrf_token, images) -> None:
    odd = DEGENERATE["black_one_pixel_png"](images)
    response = case_with(client, images, odd, url="/cases/", **{"X-CSRFToken": csrf_token})
    assert response.status_code == 303, response.get_data(as_text=True)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "too small to measure its cells" in page
    assert "Traceback" not in page


LISTS = ("/cases/", "/api/v1/cases", "/admin/audit", "/admin/audit.csv")


@pytest.mark.parametrize("url", LISTS)
def test_the_last_date_is_no_upper_bound(client, images, url: str) -> None:
    assert case_with(client, images, images.make(size=(160, 160), seed=5)).status_code == 201
    response = client.get(f"{url}?to=9999-12-31")
    assert response.status_code == 200
    assert "EDGE-1" in response.get_data(as_text=True) or url.startswith("/admin")


@pytest.mark.parametrize("url", LISTS)
def test_a_huge_page_is_an_empty_page(client, url: str) -> None:
    response = client.get(f"{url}?page=4611686018427387904")
    assert response.status_code == 200
    if url == "/api/v1/cases":
        assert response.get_json()["cases"] == []


def test_a_cell_id_too_big_for_the_database_is_not_found(client, images) -> None:
    case = case_with(client, images, images.make(size=(160, 160), seed=5)).get_json()
    response = client.get(f"/cases/{case['id']}/cells/99999999999999999999.jpg")
    assert response.status_code == 404


@pytest.mark.parametrize("url", ["/cases/", "/admin/audit"])
def test_url_for_arguments_in_the_query_are_ignored(client, url: str) -> None:
    for i in range(26):  # more than a page of each, so the page links are drawn
        body, content_type = multipart({"reference": f"P-{i}"}, [("images", ("e.png", b""))])
        assert client.post("/api/v1/cases", data=body, content_type=content_type).status_code == 201
    response = client.get(f"{url}?_method=POST&_external=1&_anchor=x&page=1")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    links = 'rel="next"' if url == "/cases/" else 'id="audit-csv"'
    assert links in page
    assert "_method" not in page
    assert "#x" not in page
