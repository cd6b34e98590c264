"""The data set's file numbers, the stand-in for patients, and folds cut along them.

No patient ids are published; a patient's photographs are believed to be numbered
together, so contiguous blocks of a class's file numbers stand in for a few patients
(``training.blocks``, ``training.patient_proxy``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from app.core.classes import CLASS_IDS
from training.data import Sample


def file_number(sample: Sample) -> int:
    """The last number in the file's name (``WBC-Benign-042.jpg`` -> 42)."""
    return number_in(sample.path.stem)


def number_in(name: str) -> int:
    """The last number in ``name`` (0 when it has none)."""
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else 0


def contiguous_folds(samples: Sequence[Sample], k: int) -> list[list[Sample]]:
    """Per class, the files in number order cut into ``k`` blocks; fold i is block i of each."""
    folds: list[list[Sample]] = [[] for _ in range(k)]
    for class_id in CLASS_IDS:
        ordered = sorted((s for s in samples if s.class_id == class_id), key=file_number)
        for i, block in enumerate(np.array_split(np.arange(len(ordered)), k)):
            folds[i].extend(ordered[j] for j in block)
    return folds


def random_folds(samples: Sequence[Sample], k: int, seed: int) -> list[list[Sample]]:
    """Per class, the files shuffled and cut into ``k`` blocks (the image-level control)."""
    rng = np.random.default_rng(seed)
    folds: list[list[Sample]] = [[] for _ in range(k)]
    for class_id in CLASS_IDS:
        members = [s for s in samples if s.class_id == class_id]
        for i, block in enumerate(np.array_split(rng.permutation(len(members)), k)):
            folds[i].extend(members[j] for j in block)
    return folds
