"""Reviewed cells in training: bags of one cell labelled by a reviewer teach the cell model
what field labels alone cannot."""

from __future__ import annotations

import numpy as np

from tests.model.test_cell_mil import cell
from training.cell_bags import Bags
from training.cell_config import CellTrainConfig
from training.cell_mil import field_outputs, fit_cell_model
from training.reviewed_cells import ReviewedCells, with_single_cells

BENIGN, EARLY_PRE_B = 0, 1


def benign_fields(n: int, rng: np.random.Generator) -> Bags:
    """Fields all labelled benign, each with small cells and, in half of them, a large one:
    the field labels never say the large cell is anything else."""
    crops, counts = [], []
    for i in range(n):
        members = [cell(rng.uniform(8, 11), False, rng) for _ in range(3)]
        if i % 2:
            members.append(cell(rng.uniform(17, 21), True, rng))
        crops += members
        counts.append(len(members))
    return Bags(
        crops=np.stack(crops),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        labels=np.full(n, BENIGN),
        excluded=np.zeros(n, np.int64),
        unmeasured=np.zeros(n, bool),
    )


def reviewed(n: int, rng: np.random.Generator) -> ReviewedCells:
    """A reviewer's cells: the large ones called Early Pre-B, the small ones Benign."""
    large = [cell(rng.uniform(17, 21), True, rng) for _ in range(n)]
    small = [cell(rng.uniform(8, 11), False, rng) for _ in range(n)]
    labels = [EARLY_PRE_B] * n + [BENIGN] * n
    return ReviewedCells(crops=np.stack(large + small), labels=np.array(labels))


def large_cells_called_early_pre_b(extra: ReviewedCells | None) -> float:
    rng = np.random.default_rng(3)
    bags = benign_fields(60, rng)
    train, val = np.arange(40), np.arange(40, 60)
    if extra is not None:
        bags, added = with_single_cells(bags, extra)
        train = np.concatenate([train, added])
    config = CellTrainConfig(model="cell_lenet", epochs=6, bag=4, batch_size=8)
    model, _, _ = fit_cell_model(config, bags, train, val)
    probe = np.stack([cell(19, True, rng) for _ in range(20)])
    probe_bags = Bags(
        crops=probe,
        offsets=np.arange(21),
        labels=np.zeros(20, np.int64),
        excluded=np.zeros(20, np.int64),
        unmeasured=np.zeros(20, bool),
    )
    outputs = field_outputs(model, probe_bags, np.arange(20))
    called = [int(np.argmax(o.cell_logits[0])) for o in outputs]
    return float(np.mean(np.array(called) == EARLY_PRE_B))


def test_reviewed_cells_teach_a_class_the_field_labels_never_give() -> None:
    assert large_cells_called_early_pre_b(None) < 0.2
    assert large_cells_called_early_pre_b(reviewed(40, np.random.default_rng(4))) > 0.8
