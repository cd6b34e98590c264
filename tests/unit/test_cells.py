"""The cell path's preprocessing: leukocytes found, excluded with reasons, cut at one scale."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.core.cells.crops import CROP_PX, cut, read_field, read_photograph
from app.core.cells.detect import NORMAL_RBC_PX, find_cells, leukocyte_mask
from app.core.cells.pooling import attention_weights, pool
from app.core.cells.stain import normalise_stain
from app.core.errors import CaptureError
from tests.support.images import ImageFactory

TWO_CELLS = [(0.3, 0.3, 1.6), (0.7, 0.6, 1.3)]


def violet_diameter(crop: np.ndarray) -> float:
    """Diameter (pixels) of the violet area through the crop's centre row."""
    row = crop[CROP_PX // 2]
    violet = (row[:, 2] > row[:, 1] + 0.15) & (row[:, 0] < 0.75)
    return float(violet.sum())


@pytest.mark.parametrize("zoom", [0.7, 1.4])
def test_cells_come_out_the_same_physical_size_at_any_zoom(zoom: float) -> None:
    base = read_photograph(ImageFactory.cell_field(TWO_CELLS))
    zoomed = read_photograph(ImageFactory.cell_field(TWO_CELLS, zoom=zoom))
    assert len(zoomed.used) == len(base.used) == 2
    for a, b in zip(base.used, zoomed.used, strict=True):
        assert b.area_rbc == pytest.approx(a.area_rbc, rel=0.08)
    assert zoomed.crops.shape == base.crops.shape == (2, CROP_PX, CROP_PX, 3)
    for a, b in zip(base.crops, zoomed.crops, strict=True):
        assert violet_diameter(b) == pytest.approx(violet_diameter(a), abs=3)


def test_boxes_map_back_to_the_photographs_pixels() -> None:
    image = ImageFactory.cell_field([(0.3, 0.3, 1.6)], zoom=1.4)
    cells = read_photograph(image)
    x, y, w, h = cells.photo_box(cells.used[0])
    # The leukocyte is drawn 1.6 red cells (1.6 x 24 x 1.4 px) across, centred at 0.3 of 314 px.
    assert x + w / 2 == pytest.approx(0.3 * image.width, abs=3)
    assert w == pytest.approx(1.6 * 24 * 1.4, rel=0.15)


def test_a_cell_cut_by_the_border_is_excluded_and_counted() -> None:
    cells = read_photograph(ImageFactory.cell_field([(0.5, 0.0, 1.5), (0.4, 0.5, 1.5)]))
    assert sorted(str(c.excluded) for c in cells.found) == ["None", "border"]
    assert cells.excluded == {"border": 1}
    assert len(cells.crops) == 1


def test_debris_and_clumps_are_excluded_with_their_reason() -> None:
    field = ImageFactory.cell_field([(0.25, 0.3, 0.5), (0.6, 0.6, 3.0), (0.3, 0.75, 1.4)])
    cells = read_photograph(field)
    reasons = sorted(str(c.excluded) for c in cells.found)
    assert reasons == ["None", "clump", "too_small"]


def test_the_scale_bar_corner_is_excluded() -> None:
    pixels = np.array(ImageFactory.cell_field([(0.3, 0.3, 1.5)]))
    pixels[212:216, 190:220] = (120, 70, 150)  # a thin violet bar in the lower-right corner
    rgb = np.asarray(Image.fromarray(pixels), np.float32) / 255
    found = find_cells(leukocyte_mask(rgb))
    assert "scale_bar" in [c.excluded for c in found]


def test_a_window_near_the_edge_slides_inside_and_a_small_image_is_mirrored() -> None:
    rgb = np.random.default_rng(0).uniform(0.2, 1.0, (100, 120, 3)).astype(np.float32)
    crops = cut(rgb, [(2.0, 98.0)])
    np.testing.assert_array_equal(crops[0], rgb[100 - CROP_PX :, :CROP_PX])
    small = rgb[:40, :50]
    mirrored = cut(small, [(25.0, 20.0)])
    assert mirrored.shape == (1, CROP_PX, CROP_PX, 3)
    assert mirrored.min() >= 0.2  # no black padding


def test_a_photograph_without_measurable_cells_is_refused() -> None:
    with pytest.raises(CaptureError) as caught:
        read_photograph(Image.new("RGB", (224, 224), (240, 240, 240)))
    assert caught.value.code == "scale_unmeasurable"
    with pytest.raises(CaptureError):
        read_photograph(Image.new("RGB", (8, 300), (240, 240, 240)))


def test_stain_normalisation_gives_one_leukocyte_colour_for_any_stain_strength() -> None:
    field = np.asarray(ImageFactory.cell_field([(0.4, 0.4, 1.6)]), np.float32) / 255
    pale = 1 - 0.5 * (1 - field)  # half the optical density, about
    mask = leukocyte_mask(field)
    strong, weak = normalise_stain(field, mask), normalise_stain(pale, leukocyte_mask(pale))
    np.testing.assert_allclose(strong[mask].mean(0), weak[mask].mean(0), atol=0.03)


def test_pooling_weights_the_cells_by_attention() -> None:
    logits = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0]])
    pooled, weights = pool(logits, np.array([0.0, 3.0]))
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > 0.9
    assert int(np.argmax(pooled)) == 1
    assert attention_weights(np.array([1.0, 1.0])) == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="without cells"):
        pool(np.zeros((0, 4)), np.zeros(0))


def test_read_field_takes_a_given_scale() -> None:
    image = ImageFactory.cell_field(TWO_CELLS)
    cells = read_field(image, rbc_px=24.0)
    assert cells.factor == pytest.approx(NORMAL_RBC_PX / 24.0)
    assert len(cells.used) == 2
    assert cells.pictures.dtype == np.uint8
