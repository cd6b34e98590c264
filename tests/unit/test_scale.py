"""The cells' scale: measuring it, checking it against the training range, and the field."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.core.errors import CaptureError
from app.core.model_card import ScaleSpec
from app.core.preprocessing import prepare, square_field, to_model_input
from app.core.scale import check_scale, measure_cells
from tests.support.images import ImageFactory

SPEC = ScaleSpec(method="test", field_px=224, reference_px=27.0, low_px=20.0, high_px=36.0)


def measured(image: Image.Image) -> float:
    found = measure_cells(image)
    assert found.size_px is not None, found.reason
    return found.size_px


@pytest.mark.parametrize("factor", [0.5, 0.75, 1.5, 2.0, 4.0])
def test_the_measure_follows_a_known_rescaling(factor: float) -> None:
    base = ImageFactory.smear((224, 224), seed=3)
    size = (round(224 * factor), round(224 * factor))
    scaled = base.resize(size, Image.Resampling.BICUBIC)
    assert measured(scaled) == pytest.approx(factor * measured(base), rel=0.08)


def test_the_measure_is_near_the_drawn_cells_size() -> None:
    # Red cells drawn 24 px across with a leukocyte twice that: the measure sits close above.
    assert 22 <= measured(ImageFactory.smear((224, 224))) <= 32


def test_the_measure_ignores_uneven_illumination_and_white_balance() -> None:
    smear = np.asarray(ImageFactory.smear((224, 224)), dtype=np.float32)
    yy, xx = np.mgrid[:224, :224]
    vignette = 1 - 0.45 * (((yy - 112) ** 2 + (xx - 112) ** 2) / (2 * 112**2))
    warm = smear * vignette[..., None] * np.array([1.0, 0.9, 0.75])
    changed = Image.fromarray(np.clip(warm, 0, 255).astype(np.uint8))
    assert measured(changed) == pytest.approx(measured(ImageFactory.smear((224, 224))), rel=0.08)


def test_an_image_without_cells_is_not_measured_and_says_why() -> None:
    blank = measure_cells(Image.new("RGB", (224, 224), (240, 230, 235)))
    assert blank.size_px is None
    assert not blank.measured
    assert blank.reason == "almost no cells were found to measure"


def test_the_uncertainty_is_a_small_relative_error_on_an_even_field() -> None:
    found = measure_cells(ImageFactory.smear((448, 448)))
    assert found.uncertainty is not None
    assert 0 < found.uncertainty < 0.1


def test_cells_within_the_training_range_are_used_as_they_are() -> None:
    image = ImageFactory.smear((224, 224))
    check = check_scale(image, SPEC)
    assert check.in_training_range
    assert check.resampled_by == 1.0
    assert check.ratio == pytest.approx(check.field_size_px / SPEC.reference_px)
    prepared = prepare(image, 150, SPEC)
    assert prepared.field is image
    assert np.array_equal(prepared.x, to_model_input(image, 150))


def test_small_cells_are_enlarged_from_a_centre_crop() -> None:
    # Zoomed out to 60%: the cells measure below the range, so a smaller field is used.
    image = ImageFactory.smear((224, 224)).resize((134, 134), Image.Resampling.LANCZOS)
    image = square_field(image, 224)
    check = check_scale(image, SPEC)
    assert check.resampled_by > 1
    assert check.field_size_px * check.resampled_by == pytest.approx(SPEC.low_px)
    prepared = prepare(image, 150, SPEC)
    assert prepared.field.size == (round(224 / check.resampled_by),) * 2
    assert prepared.x.shape == (150, 150, 3)


def test_large_cells_get_a_mirrored_margin() -> None:
    spec = ScaleSpec(method="test", reference_px=15.0, low_px=10.0, high_px=20.0)
    image = ImageFactory.smear((224, 224))
    check = check_scale(image, spec)
    assert 1 / spec.max_resample < check.resampled_by < 1
    prepared = prepare(image, 150, spec)
    side = round(224 / check.resampled_by)
    assert prepared.field.size == (side, side)
    margin = (side - 224) // 2
    field = np.asarray(prepared.field)
    assert np.array_equal(field[margin : margin + 224, margin : margin + 224], np.asarray(image))
    assert np.array_equal(field[margin - 1, margin : margin + 224], np.asarray(image)[0])


@pytest.mark.parametrize(
    ("low", "high", "code", "words"),
    [
        (60.0, 90.0, "cells_too_small", "smaller than in the training images: use the 100x"),
        (5.0, 10.0, "cells_too_large", "larger than in the training images: use the 100x"),
    ],
)
def test_cells_far_outside_the_range_are_refused_with_the_fix(
    low: float, high: float, code: str, words: str
) -> None:
    spec = ScaleSpec(method="test", reference_px=(low + high) / 2, low_px=low, high_px=high)
    with pytest.raises(CaptureError) as raised:
        check_scale(ImageFactory.smear((224, 224)), spec)
    assert raised.value.code == code
    assert raised.value.status == 422
    assert words in raised.value.message
    assert raised.value.message.startswith("Cells look ")
    assert raised.value.message.endswith(".")


def test_an_unmeasurable_image_is_refused_with_the_fix() -> None:
    with pytest.raises(CaptureError) as raised:
        prepare(Image.new("RGB", (300, 300), "white"), 150, SPEC)
    assert raised.value.code == "scale_unmeasurable"
    assert raised.value.reason.startswith("the size of the cells could not be measured")
    assert raised.value.fix.startswith("photograph a thin area of the smear")


def test_a_model_without_a_scale_spec_takes_the_whole_photograph() -> None:
    image = Image.new("RGB", (300, 200), "white")
    prepared = prepare(image, 64, None)
    assert prepared.scale is None
    assert prepared.field is image
    assert np.array_equal(prepared.x, to_model_input(image, 64))


def test_the_field_of_a_wide_photograph_is_its_centre_square() -> None:
    image = Image.fromarray(
        np.arange(300 * 200 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8)
    )
    field = square_field(image, 200)
    assert field.size == (200, 200)
    assert np.array_equal(np.asarray(field), np.asarray(image)[:, 50:250])
