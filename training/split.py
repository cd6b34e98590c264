"""Deterministic, stratified, duplicate-aware train/validation/test split."""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from app.core.classes import CLASS_IDS
from training.data import Sample, read_input

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
MANIFEST_FIELDS = ("file", "sha256", "class", "split")
MANIFEST_NAME = "split.csv"  # beside the models it was used to train


# Photographs whose 256-bit hashes differ in at most this many bits are the same field.
NEAR_DUPLICATE_BITS = 4


def perceptual_hash(sample: Sample) -> str:
    """16x16 average hash: equal or close for byte-identical and near-identical photographs."""
    grey = read_input(sample, 16).mean(axis=2)
    bits = (grey > np.median(grey)).flatten()
    return np.packbits(bits).tobytes().hex()


def near_duplicate_pairs(hashes: list[str], max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """Index pairs (i < j) of hashes within ``max_bits`` Hamming distance, shape (n, 2)."""
    if not hashes:
        return np.zeros((0, 2), dtype=np.int64)
    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for h in hashes])
    ones = bits.astype(np.float32)
    distance = ones @ (1 - ones).T + (1 - ones) @ ones.T
    i, j = np.nonzero(np.triu(distance <= max_bits, k=1))
    return np.stack([i, j], axis=1)


def _union_groups(samples: list[Sample], pairs: list[tuple[int, int]]) -> list[list[Sample]]:
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(j)] = find(i)
    groups: dict[int, list[Sample]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[find(i)].append(sample)
    return list(groups.values())


def duplicate_groups(
    samples: list[Sample], max_bits: int = 0, hashes: list[str] | None = None
) -> list[list[Sample]]:
    """Group samples that share a sha256 or whose perceptual hashes differ in <= max_bits."""
    hashes = hashes if hashes is not None else [perceptual_hash(s) for s in samples]
    first: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for i, sample in enumerate(samples):
        pairs.append((first.setdefault(sample.sha256, i), i))
    pairs += [(int(i), int(j)) for i, j in near_duplicate_pairs(hashes, max_bits)]
    return _union_groups(samples, pairs)


def assign_splits(
    samples: list[Sample],
    seed: int = 42,
    fractions: dict[str, float] | None = None,
    near_bits: int = NEAR_DUPLICATE_BITS,
) -> dict[str, str]:
    """Map each sample's sha256 to a split.

    Groups of identical photographs (same bytes or same perceptual hash) are split
    as units; each class is split separately so the class balance holds in every
    split. The order depends only on the seed and the image contents, not on file
    names or listing order. Then a group of near duplicates (hashes within
    ``near_bits``) whose members fell into different splits is moved whole
    into the first of them in SPLITS order: the held-out splits only lose images,
    so a model trained before this rule never saw any image it is evaluated on.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    hashes = [perceptual_hash(s) for s in samples]
    by_class: dict[str, list[list[Sample]]] = defaultdict(list)
    for group in duplicate_groups(samples, 0, hashes):
        by_class[_one_class(group)].append(group)

    assignment: dict[str, str] = {}
    for class_id in sorted(by_class):
        groups = by_class[class_id]
        groups.sort(
            key=lambda g: hashlib.sha256(f"{seed}:{min(s.sha256 for s in g)}".encode()).hexdigest()
        )
        total = sum(len(g) for g in groups)
        n_test = round(total * fractions["test"])
        n_val = round(total * fractions["val"])
        counts = {"test": 0, "val": 0}
        for group in groups:
            if counts["test"] < n_test:
                split = "test"
            elif counts["val"] < n_val:
                split = "val"
            else:
                split = "train"
            if split != "train":
                counts[split] += len(group)
            for s in group:
                assignment[s.sha256] = split
    for group in duplicate_groups(samples, near_bits, hashes):
        _one_class(group)
        first = min((assignment[s.sha256] for s in group), key=SPLITS.index)
        for s in group:
            assignment[s.sha256] = first
    return assignment


def _one_class(group: list[Sample]) -> str:
    classes = {s.class_id for s in group}
    if len(classes) > 1:
        raise ValueError(f"identical images filed under different classes: {group}")
    return group[0].class_id


def write_manifest(samples: list[Sample], assignment: dict[str, str], root: Path, out: Path) -> str:
    """Write the split manifest CSV and return its sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_FIELDS)
        for s in sorted(samples, key=lambda s: (CLASS_IDS.index(s.class_id), str(s.path))):
            writer.writerow([_class_path(s, root), s.sha256, s.class_id, assignment[s.sha256]])
    return hashlib.sha256(out.read_bytes()).hexdigest()


def _class_path(sample: Sample, root: Path) -> str:
    """The file as class folder/name, the same whether the data set's root or its
    ``original`` folder was given."""
    return sample.path.relative_to(root).as_posix().removeprefix("original/")


def read_manifest(path: Path) -> dict[str, str]:
    """sha256 -> split from a manifest written by ``write_manifest``."""
    with path.open(newline="") as fh:
        return {row["sha256"]: row["split"] for row in csv.DictReader(fh)}


class SplitLeakError(ValueError):
    """A new split would put an image a committed model trained on into evaluation."""


def moves(old: dict[str, str], new: dict[str, str]) -> dict[str, tuple[str, str]]:
    """sha256 -> (old split, new split) for every image whose split changes.

    Raises SplitLeakError when an image moves later in SPLITS order (train to val or
    test, val to test): models trained or fitted on it would then be scored on it.
    """
    changed = {k: (old[k], new[k]) for k in old.keys() & new.keys() if old[k] != new[k]}
    leaks = sorted(k for k, (a, b) in changed.items() if SPLITS.index(b) > SPLITS.index(a))
    if leaks:
        raise SplitLeakError(f"{len(leaks)} image(s) would move out of train or val: {leaks[:5]}")
    return changed
