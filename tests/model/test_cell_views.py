"""A cell model served in eight views: each crop scored as the mean of its flips and
quarter turns, the same as the block cross-validation scores it, and explained alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from app.core.cells.model import load_cell_model
from app.core.cells.serving import ServedCellModel
from app.core.classes import CLASS_IDS
from app.core.model_store import softmax
from app.core.orientations import ORIENTATIONS
from tests.model.test_cell_mil import synthetic_bags
from training.architectures import architecture
from training.cell_mil import field_outputs, orientations


def _saved(root: Path, views: int) -> Path:
    """An untrained cell LeNet with a card that serves it in ``views`` views."""
    folder = root / f"views{views}"
    folder.mkdir()
    tf.keras.utils.set_random_seed(11)
    architecture("cell_lenet").build().save(folder / "cell_lenet.keras")
    card = {
        "name": "cell_lenet",
        "input_size": 64,
        "class_ids": list(CLASS_IDS),
        "version": "test",
        "unit": "cell",
        "inference": {"views": views},
    }
    (folder / "cell_lenet.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("cell-views")
    return {views: _saved(root, views) for views in (1, ORIENTATIONS)}


def test_eight_views_average_every_output_over_the_crops_orientations(
    model_dirs: dict[int, Path],
) -> None:
    one, eight = (load_cell_model(model_dirs[v], "cell_lenet") for v in (1, ORIENTATIONS))
    assert (one.views, eight.views) == (1, ORIENTATIONS)
    crops = synthetic_bags(3, seed=2).crops.astype(np.float32) / 255
    each = [one.run(np.ascontiguousarray(v)) for v in orientations(crops, ORIENTATIONS)]
    served = eight.run(crops)
    for name in ("logits", "scores", "features"):
        mean = np.mean([getattr(o, name) for o in each], axis=0)
        np.testing.assert_allclose(getattr(served, name), mean, atol=1e-4)
    # The network alone answers a turned crop differently: the mean is not the identity.
    assert np.abs(each[0].logits - each[3].logits).max() > 1e-3
    turned = eight.run(np.ascontiguousarray(np.rot90(crops, 1, axes=(1, 2))))
    np.testing.assert_allclose(turned.logits, served.logits, atol=1e-4)
    np.testing.assert_allclose(turned.features, served.features, atol=1e-4)


def test_a_field_served_in_eight_views_is_the_field_the_blocks_scored(
    model_dirs: dict[int, Path],
) -> None:
    loaded = load_cell_model(model_dirs[ORIENTATIONS], "cell_lenet")
    bags = synthetic_bags(4, seed=6)
    scored = field_outputs(loaded.keras_model, bags, np.arange(4), views=ORIENTATIONS)
    for i, out in enumerate(scored):
        cells = bags.cells(i).astype(np.float32) / 255
        answer = loaded.answer(loaded.run(cells), calibrated=False)
        assert out.logits is not None
        np.testing.assert_allclose(answer.probabilities, softmax(out.logits[None])[0], atol=1e-5)


def test_a_cell_heat_map_in_eight_views_turns_with_the_crop(model_dirs: dict[int, Path]) -> None:
    served = ServedCellModel.build(model_dirs[ORIENTATIONS], "cell_lenet")
    assert served.gradcam.views == ORIENTATIONS
    crop = synthetic_bags(1, seed=9).crops[0].astype(np.float32) / 255
    heat, index, logits = served.gradcam.heatmap_top(crop)
    np.testing.assert_allclose(logits, served.model.run(crop[None]).logits[0], atol=1e-4)
    turned, turned_index, _ = served.gradcam.heatmap_top(np.rot90(crop).copy())
    assert turned_index == index
    np.testing.assert_allclose(turned, np.rot90(heat), atol=1e-4)
    # One view's map does not turn with the crop, so the check above could fail.
    plain = ServedCellModel.build(model_dirs[1], "cell_lenet").gradcam
    assert plain.views == 1
    one = plain.heatmap(crop, index)
    assert np.abs(plain.heatmap(np.rot90(crop).copy(), index) - np.rot90(one)).max() > 1e-3
