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


def perceptual_hash(sample: Sample) -> str:
    """16x16 average hash: equal for byte-identical and near-identical photographs."""
    grey = read_input(sample, 16).mean(axis=2)
    bits = (grey > np.median(grey)).flatten()
    return np.packbits(bits).tobytes().hex()


def duplicate_groups(samples: list[Sample]) -> list[list[Sample]]:
    """Group samples that share a sha256 or a perceptual hash (union-find)."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in (lambda s: s.sha256, perceptual_hash):
        first: dict[str, int] = {}
        for i, sample in enumerate(samples):
            k = key(sample)
            if k in first:
                parent[find(i)] = find(first[k])
            else:
                first[k] = i
    groups: dict[int, list[Sample]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[find(i)].append(sample)
    return list(groups.values())


def assign_splits(
    samples: list[Sample], seed: int = 42, fractions: dict[str, float] | None = None
) -> dict[str, str]:
    """Map each sample's sha256 to a split.

    Groups of duplicates move together; each class is split separately so the
    class balance holds in every split. The order depends only on the seed and
    the image contents, not on file names or listing order.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    by_class: dict[str, list[list[Sample]]] = defaultdict(list)
    for group in duplicate_groups(samples):
        classes = {s.class_id for s in group}
        if len(classes) > 1:
            raise ValueError(f"identical images filed under different classes: {group}")
        by_class[group[0].class_id].append(group)

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
    return assignment


def write_manifest(samples: list[Sample], assignment: dict[str, str], root: Path, out: Path) -> str:
    """Write the split manifest CSV and return its sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_FIELDS)
        for s in sorted(samples, key=lambda s: (CLASS_IDS.index(s.class_id), str(s.path))):
            writer.writerow(
                [s.path.relative_to(root).as_posix(), s.sha256, s.class_id, assignment[s.sha256]]
            )
    return hashlib.sha256(out.read_bytes()).hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """sha256 -> split from a manifest written by ``write_manifest``."""
    with path.open(newline="") as fh:
        return {row["sha256"]: row["split"] for row in csv.DictReader(fh)}
