"""The capture-robustness suite's image transforms and its scores."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.core.scale import measure_cells
from tests.support.images import ImageFactory
from training.capture import (
    CAPTURES,
    Outcomes,
    SetScore,
    camera,
    capture_markdown,
    coverage_target,
    zoom,
)


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def smear() -> Image.Image:
    return ImageFactory.smear((224, 224), seed=5)


def test_every_capture_yields_a_decodable_image(smear: Image.Image) -> None:
    sizes = {name: decoded(capture(smear)).size for name, capture in CAPTURES.items()}
    assert sizes["camera_2x"] == (448, 448) and sizes["camera_4x"] == (896, 896)
    assert sizes["phone_like"] == (672, 672)
    assert all(sizes[n] == (224, 224) for n in sizes if not n.startswith(("camera", "phone")))
    assert decoded(CAPTURES["unperturbed"](smear)).tobytes() == smear.tobytes()


@pytest.mark.parametrize("factor", [0.6, 0.85, 1.4])
def test_zoom_changes_the_cells_size_by_its_factor(smear: Image.Image, factor: float) -> None:
    before = measure_cells(smear).size_px
    after = measure_cells(zoom(factor)(smear)).size_px
    assert before and after
    assert after / before == pytest.approx(factor, rel=0.12)


def test_a_higher_resolution_camera_keeps_the_field(smear: Image.Image) -> None:
    before = measure_cells(smear).size_px
    after = measure_cells(camera(2)(smear)).size_px
    assert before and after and after / before == pytest.approx(2.0, rel=0.1)


def test_scores_count_refusals_flags_and_silent_errors() -> None:
    o = Outcomes(
        labels=np.array([0, 1, 2, 3, 0]),
        refused=np.array([True, False, False, False, False]),
        ood=np.array([False, True, False, False, False]),
        predicted=np.array([-1, 1, 2, 0, 0]),
        confidence=np.array([0.0, 0.99, 0.95, 0.97, 0.6]),
        probabilities=np.zeros((5, 4)),
    )
    s = SetScore.of(o, uncertain_below=0.9)
    assert s.coverage == pytest.approx(2 / 5)  # images 2 and 3 are answered
    assert s.accuracy == pytest.approx(0.5)
    assert s.silent_errors == pytest.approx(1 / 5)  # image 3: Pro-B called Benign
    assert s.refused == pytest.approx(1 / 5) and s.ood == pytest.approx(1 / 5)
    assert SetScore.of(o, None).coverage == pytest.approx(3 / 5)


def test_the_table_marks_missed_targets() -> None:
    good = SetScore(accuracy=1.0, coverage=0.95, silent_errors=0.0, refused=0.0, ood=0.05)
    poor = SetScore(accuracy=0.9, coverage=0.5, silent_errors=0.02, refused=0.1, ood=0.4)
    text = capture_markdown({"m": {"blur": good, "phone_like": poor}}, {"m": "Model"})
    assert "| Model | blur | 100.0% | 95.0% | 0.0% | 0.0% | 5.0% |" in text
    assert "| Model | phone_like | 90.0% | 50.0% ✗ (target 75%) | 2.0% ✗ | 10.0% | 40.0% |" in text
    assert coverage_target("zoom_1.5") is None and coverage_target("jpeg_q30") == 0.9
