"""Patient blocks: folds that hold every field out once, the figures and their intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.classes import CLASS_IDS
from training.blocks import (
    block_bootstrap,
    block_ids,
    edge_accuracy,
    figures,
    fold_plans,
    neighbour_similarity,
    paired_gain,
    summarise,
)
from training.data import Sample
from training.file_numbers import file_number

FOLDERS = {"benign": "Benign", "early_pre_b": "Early", "pre_b": "Pre", "pro_b": "Pro"}


def samples(per_class: int = 40) -> list[Sample]:
    out = []
    for class_id, folder in FOLDERS.items():
        for n in np.random.default_rng(1).permutation(per_class) + 1:
            path = Path(f"/data/original/{folder}/WBC-{folder}-{n:03d}.jpg")
            out.append(Sample(path=path, class_id=class_id, sha256=f"{class_id}{n}"))
    return out


def test_every_field_is_held_out_once_and_never_trains_on_its_own_fold() -> None:
    data = samples()
    plans = fold_plans(data, 5)
    held = np.concatenate([p.test for p in plans])
    assert sorted(held) == list(range(len(data)))
    for plan in plans:
        parts = [set(plan.train), set(plan.val), set(plan.test)]
        assert not parts[0] & parts[1]
        assert not parts[0] & parts[2]
        assert not parts[1] & parts[2]
        assert len(plan.train) + len(plan.val) + len(plan.test) == len(data)
        numbers = sorted(file_number(data[i]) for i in plan.test if data[i].class_id == "benign")
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_without_validation_the_validation_block_trains_and_the_held_out_stays_out() -> None:
    data = samples()
    with_validation = fold_plans(data, 5)
    for plan, kept in zip(fold_plans(data, 5, validation=False), with_validation, strict=True):
        assert len(plan.val) == 0
        assert np.array_equal(plan.test, kept.test)
        assert sorted(plan.train) == sorted([*kept.train, *kept.val])


def test_fewer_training_blocks_keep_the_validation_and_held_out_blocks_and_drop_the_far_one() -> (
    None
):
    data = samples()
    full = fold_plans(data, 5)
    for plan, kept in zip(fold_plans(data, 5, training_blocks=2), full, strict=True):
        assert np.array_equal(plan.val, kept.val)
        assert np.array_equal(plan.test, kept.test)
        assert set(plan.train) < set(kept.train)
        dropped = sorted(set(kept.train) - set(plan.train))
        # The block dropped is the one just before the held-out block, the validation's
        # neighbour stays.
        before = fold_plans(data, 5)[(plan.fold - 1) % 5].test
        assert dropped == sorted(before)
    for plan in fold_plans(data, 5, training_blocks=1):
        assert np.array_equal(plan.train, full[(plan.fold + 2) % 5].test)
    for wrong in (0, 4):
        with pytest.raises(ValueError, match="training_blocks"):
            fold_plans(data, 5, training_blocks=wrong)


def _held(fold: int, numbers: range, right: set[int]) -> list[dict[str, object]]:
    """Held-out Pre-B records of one fold, answered right for the numbers in ``right``."""
    return [
        {
            "file": f"Pre/WBC-Malignant-Pre-{n:03d}.jpg",
            "class_id": "pre_b",
            "fold": fold,
            "role": "test",
            "probabilities": [0.0, 0.0, 1.0, 0.0] if n in right else [0.0, 0.0, 0.0, 1.0],
        }
        for n in numbers
    ]


def test_the_edge_check_tells_the_edges_beside_a_training_block_from_the_others() -> None:
    # Fold 1 of 5: block 0 trained beside it (its first 20 files), block 2 only validated.
    records = _held(1, range(101, 161), right=set(range(101, 121)))
    edges = edge_accuracy(records, k=5)
    assert edges["beside training"] == {"fields": 20, "accuracy": 1.0}
    assert edges["beside none"] == {"fields": 20, "accuracy": 0.0}
    assert edges["inside"] == {"fields": 20, "accuracy": 0.0}
    # Fold 0 has no block before it; with the validation blocks trained, block 1 trains.
    first = _held(0, range(1, 61), right=set(range(41, 61)))
    assert edge_accuracy(first, k=5)["beside none"] == {"fields": 40, "accuracy": 0.5}
    trained = edge_accuracy(first, k=5, validation_trained=True)
    assert trained["beside training"] == {"fields": 20, "accuracy": 1.0}
    assert trained["beside none"] == {"fields": 20, "accuracy": 0.0}


def test_bootstrap_blocks_are_runs_of_neighbouring_files() -> None:
    data = samples()
    ids = block_ids(data, size=10)
    benign = sorted((file_number(s), ids[i]) for i, s in enumerate(data) if s.class_id == "benign")
    assert [b for _, b in benign] == [f"benign:{i // 10}" for i in range(40)]


def test_figures_count_any_malignant_class_as_malignant_recall() -> None:
    y_true = np.array([0, 0, 1, 2, 3, 3])
    y_pred = np.array([0, 1, 2, 2, 3, 0])
    got = figures(y_true, y_pred)
    assert got["accuracy"] == pytest.approx(3 / 6)
    assert got["benign_recall"] == pytest.approx(1 / 2)
    assert got["malignant_recall"] == pytest.approx(3 / 4)


def test_the_block_bootstrap_interval_holds_the_point_and_widens_with_clustered_errors() -> None:
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(4), 100)
    blocks = np.array(
        [
            f"{CLASS_IDS[c]}:{i // 20}"
            for c, i in zip(y_true, np.tile(np.arange(100), 4), strict=True)
        ]
    )
    scattered = np.where(rng.uniform(size=400) < 0.1, (y_true + 1) % 4, y_true)
    clustered = y_true.copy()
    clustered[:40] = 1  # two whole blocks of Benign wrong
    point = figures(y_true, scattered)["accuracy"]
    lo, hi = block_bootstrap(y_true, scattered, blocks, n=300)["accuracy"]
    assert lo <= point <= hi
    width = np.diff(block_bootstrap(y_true, clustered, blocks, n=300)["benign_recall"])[0]
    assert width > np.diff(block_bootstrap(y_true, scattered, blocks, n=300)["benign_recall"])[0]


def test_summarise_scores_an_unanswered_field_as_wrong() -> None:
    data = samples(10)
    records = [
        {
            "file": f"{FOLDERS[s.class_id]}/{s.path.name}",
            "class_id": s.class_id,
            "role": "test",
            "probabilities": None if i == 0 else list(np.eye(4)[CLASS_IDS.index(s.class_id)]),
        }
        for i, s in enumerate(data)
    ]
    summary = summarise(records, data)
    assert summary["n_fields"] == 40
    assert summary["answered"] == pytest.approx(39 / 40)
    assert summary["accuracy"] == pytest.approx(39 / 40)
    assert summary["ci95"]["accuracy"][0] <= summary["accuracy"] <= summary["ci95"]["accuracy"][1]


def test_neighbour_similarity_finds_files_numbered_together() -> None:
    data = samples(60)
    features = np.array(
        [[file_number(s) // 10, file_number(s) // 10] for s in data]
    ) + np.random.default_rng(2).normal(0, 0.3, (len(data), 2))
    result = neighbour_similarity(data, features, draws=200)
    assert all(r["ratio"] < 0.5 and r["p"] < 0.01 for r in result.values())
    shuffled = neighbour_similarity(
        data, np.random.default_rng(3).normal(size=(len(data), 2)), draws=200
    )
    assert all(r["ratio"] > 0.8 for r in shuffled.values())


def test_the_paired_gain_counts_the_same_fields_and_resamples_whole_blocks() -> None:
    def run(right: set[int]) -> list[dict[str, object]]:
        return [
            {"file": f"Pre/WBC-Malignant-Pre-{n:03d}.jpg", "class_id": "pre_b", "role": "val"}
            | {"probabilities": [0.0, 0.0, 1.0, 0.0] if n in right else [0.0, 0.0, 0.0, 1.0]}
            for n in range(1, 101)
        ]

    same = paired_gain(run(set(range(1, 61))), run(set(range(1, 61))))
    assert (same["gain"], same["low"], same["high"], same["fields"]) == (0.0, 0.0, 0.0, 100)
    # Ten more fields read right, all in one block of 20 files: every draw holding that
    # block gains, the others do not, so the interval runs from no gain to more.
    better = paired_gain(run(set(range(1, 61))), run(set(range(1, 71))))
    assert better["gain"] == pytest.approx(0.10)
    assert better["low"] == 0.0
    assert 0.10 < better["high"] <= 0.3
    # Spread over every block, the gain shows in every draw.
    even = set(range(2, 101, 2))
    spread = paired_gain(run(even), run(even | set(range(1, 101, 4))))
    assert spread["gain"] == pytest.approx(0.25)
    assert spread["low"] > 0
