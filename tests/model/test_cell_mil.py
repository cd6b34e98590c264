"""Multiple-instance training: a cell model learns from field labels alone."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from app.core.cells.crops import CROP_PX
from app.core.cells.pooling import pool
from training.cell_bags import Bags
from training.cell_config import CellTrainConfig
from training.cell_mil import (
    AttentionPool,
    augment_bag,
    field_outputs,
    fit_cell_model,
    hed_jitter,
    orientations,
    turn_and_zoom,
)

YY, XX = np.mgrid[:CROP_PX, :CROP_PX] - CROP_PX / 2


def cell(radius: float, nucleolus: bool, rng: np.random.Generator) -> np.ndarray:
    crop = np.full((CROP_PX, CROP_PX, 3), 235, np.float32)
    r2 = (YY - rng.uniform(-3, 3)) ** 2 + (XX - rng.uniform(-3, 3)) ** 2
    crop[r2 < radius**2] = (110, 60, 150)
    if nucleolus:
        crop[r2 < (radius / 3) ** 2] = (190, 170, 215)
    return np.clip(crop + rng.normal(0, 5, crop.shape), 0, 255).astype(np.uint8)


def synthetic_bags(n: int, seed: int) -> Bags:
    """Benign fields hold small dense cells; 'early_pre_b' fields one large blast among them."""
    rng = np.random.default_rng(seed)
    crops, counts, labels = [], [], []
    for i in range(n):
        label = i % 2
        members = [cell(rng.uniform(8, 11), False, rng) for _ in range(rng.integers(2, 6))]
        if label:
            members.insert(int(rng.integers(0, len(members))), cell(rng.uniform(17, 21), True, rng))
        crops += members
        counts.append(len(members))
        labels.append(label)
    return Bags(
        crops=np.stack(crops),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        labels=np.array(labels),
        excluded=np.zeros(n, np.int64),
        unmeasured=np.zeros(n, bool),
    )


def test_the_keras_pooling_matches_the_served_pooling() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 4)).astype(np.float32)
    scores = rng.normal(size=(2, 5, 1)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    pooled = np.asarray(AttentionPool()(logits, scores, mask))
    for b, n in enumerate((3, 5)):
        expected, _ = pool(logits[b, :n], scores[b, :n, 0])
        np.testing.assert_allclose(pooled[b], expected, atol=1e-5)


def test_hed_jitter_is_the_identity_at_unit_gain_and_no_offset() -> None:
    crops = tf.random.uniform((2, 8, 8, 3), 0.05, 1.0)
    same = hed_jitter(crops, tf.ones((1, 1, 1, 3)), tf.zeros((1, 1, 1, 3)))
    np.testing.assert_allclose(same.numpy(), crops.numpy(), atol=1e-4)
    darker = hed_jitter(crops, tf.fill((1, 1, 1, 3), 1.5), tf.zeros((1, 1, 1, 3)))
    assert float(tf.reduce_mean(darker)) < float(tf.reduce_mean(crops))


def test_a_quarter_turn_a_zoom_and_a_shift_move_the_pixels_where_they_should() -> None:
    crops = tf.random.uniform((1, 16, 16, 3))
    one = tf.ones((1,))

    same = turn_and_zoom(crops, tf.zeros((1,)), one, tf.zeros((1, 2)))
    np.testing.assert_allclose(same.numpy(), crops.numpy(), atol=1e-5)
    turned = turn_and_zoom(crops, one * np.pi / 2, one, tf.zeros((1, 2)))
    np.testing.assert_allclose(turned.numpy(), tf.image.rot90(crops).numpy(), atol=1e-5)
    moved = turn_and_zoom(crops, tf.zeros((1,)), one, tf.constant([[3.0, 0.0]]))
    np.testing.assert_allclose(moved.numpy()[:, :, 3:], crops.numpy()[:, :, :-3], atol=1e-5)
    # Magnified twice, the centre's 4x4 square covers the centre's 8x8 (edges blended).
    disc = np.zeros((1, 16, 16, 1), np.float32)
    disc[0, 6:10, 6:10] = 1.0
    zoomed = turn_and_zoom(tf.constant(disc), tf.zeros((1,)), one * 2, tf.zeros((1, 2))).numpy()
    assert zoomed[0, 5:11, 5:11].min() > 0.99
    assert zoomed.sum() == pytest.approx(64, abs=6)


def test_the_crop_geometry_jitter_changes_each_crop_only_when_asked() -> None:
    tf.random.set_seed(0)
    crops = tf.constant(synthetic_bags(1, seed=0).crops[:3], tf.float32) / 255.0
    plain = CellTrainConfig(model="cellnet", hed_gain=0, hed_offset=0, cell_gain=0, brightness=0)
    kept = augment_bag(crops, plain).numpy()
    turned = augment_bag(crops, CellTrainConfig(**{**vars(plain), "crop_geometry": 0.1})).numpy()
    # Flips and quarter turns keep each crop's pixels; any-angle turns, zooms and shifts do not.
    for before, after in zip(crops.numpy(), kept, strict=True):
        np.testing.assert_allclose(np.sort(before, None), np.sort(after, None), atol=1e-5)
    assert all(
        not np.allclose(np.sort(before, None), np.sort(after, None), atol=1e-3)
        for before, after in zip(crops.numpy(), turned, strict=True)
    )
    assert turned.shape == crops.shape


def test_a_cell_model_learns_which_cell_makes_a_field_malignant() -> None:
    train, val = synthetic_bags(160, seed=1), synthetic_bags(40, seed=2)
    both = Bags(
        crops=np.concatenate([train.crops, val.crops]),
        offsets=np.concatenate([train.offsets, val.offsets[1:] + train.offsets[-1]]),
        labels=np.concatenate([train.labels, val.labels]),
        excluded=np.zeros(200, np.int64),
        unmeasured=np.zeros(200, bool),
    )
    config = CellTrainConfig(model="cell_lenet", epochs=6, bag=6, batch_size=8)
    model, history, _ = fit_cell_model(config, both, np.arange(160), np.arange(160, 200))
    outputs = field_outputs(model, both, np.arange(160, 200))
    logits = [o.logits for o in outputs if o.logits is not None]
    assert len(logits) == len(outputs)  # every synthetic field has cells
    predicted = np.array([int(np.argmax(field)) for field in logits])
    assert (predicted == val.labels).mean() >= 0.9
    # In a malignant field the blast, the largest cell, gets the most attention.
    blasts_found = []
    for i, out in zip(range(160, 200), outputs, strict=True):
        if both.labels[i]:
            crops = both.cells(i)
            blast = int(np.argmax([(c[..., 0] < 160).sum() for c in crops]))
            blasts_found.append(int(np.argmax(out.cell_scores)) == blast)
    assert np.mean(blasts_found) >= 0.8


def test_eight_views_make_a_fields_answer_the_same_however_its_cells_are_turned() -> None:
    from training.architectures import architecture

    tf.keras.utils.set_random_seed(3)
    model = architecture("cell_lenet").build()
    bags = synthetic_bags(4, seed=5)
    turned = Bags(
        crops=np.ascontiguousarray(np.rot90(bags.crops, 1, axes=(1, 2))[:, :, ::-1]),
        offsets=bags.offsets,
        labels=bags.labels,
        excluded=bags.excluded,
        unmeasured=bags.unmeasured,
    )
    fields = np.arange(4)
    for as_is, other in zip(
        field_outputs(model, bags, fields, views=8),
        field_outputs(model, turned, fields, views=8),
        strict=True,
    ):
        assert as_is.logits is not None
        assert other.logits is not None
        np.testing.assert_allclose(as_is.logits, other.logits, atol=1e-4)
        np.testing.assert_allclose(as_is.cell_scores, other.cell_scores, atol=1e-4)
    # One view is not invariant: the check above could fail.
    single = field_outputs(model, bags, fields)[0].cell_logits
    single_turned = field_outputs(model, turned, fields)[0].cell_logits
    assert np.abs(single - single_turned).max() > 1e-3


def test_the_eight_orientations_are_the_flips_and_quarter_turns() -> None:
    crop = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)
    views = orientations(crop, 8)
    assert len(views) == 8
    assert len({v.tobytes() for v in views}) == 8
    np.testing.assert_array_equal(views[0], crop)
    assert orientations(crop, 1)[0] is crop
    # Fewer views are the first of the eight: the crop and its mirror, then a quarter turn.
    for count in (2, 4):
        fewer = orientations(crop, count)
        assert [v.tobytes() for v in fewer] == [v.tobytes() for v in views[:count]]
    with pytest.raises(ValueError, match="views"):
        orientations(crop, 3)
