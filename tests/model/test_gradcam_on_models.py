"""Grad-CAM of the committed models on real smears: the same logits as serving, and the
heat on the leukocytes rather than on the scale bar."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from app.core.explanation.gradcam import GradCam
from app.core.model_store import LoadedModel, load_model
from app.core.preprocessing import load_image, to_model_input
from training.architectures import FIELD_ARCHITECTURES
from training.data import discover
from training.heat_eval import heat_shares
from training.heat_eval import spread as spread_samples

# More heat on the cells than their area share, little on the scale bar (docs/decisions.md).
MIN_CELL_HEAT_OVER_AREA = {"lenet": 1.3, "sequential": 1.1, "vggnet": 1.5}
MIN_HEAT_ON_CELLS = 0.20
MAX_HEAT_IN_CORNER = 0.05


@functools.cache
def loaded_model(models_dir: Path, name: str) -> LoadedModel:
    if not (models_dir / f"{name}.keras").is_file():
        pytest.skip(f"no trained {name} model in {models_dir}")
    return load_model(models_dir, name)


@functools.cache
def gradcam(models_dir: Path, name: str) -> GradCam:
    return GradCam(loaded_model(models_dir, name))


@functools.cache
def spread(data_dir: Path, per_class: int) -> list[Path]:
    """``per_class`` images of each class, spread over its files (neighbours share a stain);
    cached because discovery hashes every file of the data set."""
    return [s.path for s in spread_samples(discover(data_dir), per_class)]


@pytest.mark.data
@pytest.mark.parametrize("name", FIELD_ARCHITECTURES)
def test_heatmap_shape_and_range_on_real_images(
    name: str, models_dir: Path, data_dir: Path
) -> None:
    cam = gradcam(models_dir, name)
    model = loaded_model(models_dir, name)
    for path in spread(data_dir, 1):
        x = to_model_input(load_image(path), cam.input_size)
        heat, top, logits = cam.heatmap_top(x)
        assert heat.shape == (cam.input_size, cam.input_size)
        assert heat.min() >= 0.0
        assert heat.max() <= 1.0
        assert top == int(np.argmax(logits))
        np.testing.assert_allclose(cam.heatmap(x, top), heat, atol=1e-5)
        # The Grad-CAM pass computes the same logits as the serving model.
        np.testing.assert_allclose(logits, model.logits(x)[0], rtol=1e-4, atol=1e-4)
        # Normalised to a peak of 1, or all zeros when nothing raises the score.
        assert heat.max() == 0.0 or heat.max() == pytest.approx(1.0)


@pytest.mark.data
@pytest.mark.parametrize("name", FIELD_ARCHITECTURES)
def test_heat_lies_on_leukocytes_not_on_the_scale_bar(
    name: str, models_dir: Path, data_dir: Path
) -> None:
    cam = gradcam(models_dir, name)
    found = [heat_shares(cam, load_image(path)) for path in spread(data_dir, 5)]
    shares = [f for f in found if f is not None]
    assert len(shares) >= 18, "the top class has no heat on most images"
    on_cells, in_corner, cell_area = (float(np.mean(v)) for v in zip(*shares, strict=True))
    print(
        f"{name}: heat on cells {on_cells:.3f} (cells cover {cell_area:.3f} of the image), "
        f"in the scale-bar corner {in_corner:.3f}"
    )
    assert on_cells >= MIN_HEAT_ON_CELLS
    assert on_cells >= MIN_CELL_HEAT_OVER_AREA.get(name, 1.0) * cell_area
    assert in_corner <= MAX_HEAT_IN_CORNER
