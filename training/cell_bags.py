"""Each field's leukocyte crops, read once through the cell path's preprocessing.

A field is a bag of cells with one label (its photograph's class): the cells' own
classes are unknown. ``read_bags`` runs ``app.core.cells.crops`` on every sample;
the result can be cached in a ``.npz`` file, since reading takes about a minute.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.cells.crops import CROP_PX, read_field
from app.core.errors import ImageDecodeError, ImageTooLargeError
from app.core.preprocessing import load_image
from app.core.scale import measure_cells
from training.data import DataSetError, Sample
from training.progress import track

log = logging.getLogger(__name__)

# Red-cell size (pixels) assumed where a training photograph's cannot be measured.
FALLBACK_RBC_PX = 24.0


@dataclass(frozen=True)
class Bags:
    """Crops of every field, concatenated: field i's are ``crops[offsets[i]:offsets[i+1]]``."""

    crops: np.ndarray  # (M, CROP_PX, CROP_PX, 3) uint8, stain-normalised
    offsets: np.ndarray  # (n + 1,)
    labels: np.ndarray  # (n,)
    excluded: np.ndarray  # (n,) objects left out per field
    unmeasured: np.ndarray  # (n,) bool: the fallback scale was used

    def __len__(self) -> int:
        return len(self.labels)

    def count(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def cells(self, i: int) -> np.ndarray:
        return self.crops[self.offsets[i] : self.offsets[i + 1]]


def _read_one(sample: Sample) -> tuple[np.ndarray, int, bool]:
    try:
        image = load_image(sample.path)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        raise DataSetError(f"unreadable image {str(sample.path)!r}: {exc}") from exc
    measured = measure_cells(image)
    rbc_px = measured.size_px or FALLBACK_RBC_PX
    field = read_field(image, rbc_px)
    crops = (np.clip(field.crops, 0, 1) * 255 + 0.5).astype(np.uint8)
    return crops, sum(field.excluded.values()), measured.size_px is None


def read_bags(samples: Sequence[Sample]) -> Bags:
    """Every sample's crops, in the samples' order."""
    parts, excluded, unmeasured = [], [], []
    for sample in track(samples, f"finding the cells of {len(samples)} images"):
        crops, n_excluded, fallback = _read_one(sample)
        parts.append(crops)
        excluded.append(n_excluded)
        unmeasured.append(fallback)
    counts = np.array([len(p) for p in parts])
    empty = np.zeros((0, CROP_PX, CROP_PX, 3), np.uint8)
    return Bags(
        crops=np.concatenate(parts) if parts else empty,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        labels=np.array([s.label for s in samples], np.int64),
        excluded=np.array(excluded, np.int64),
        unmeasured=np.array(unmeasured, bool),
    )


def _key(samples: Sequence[Sample]) -> str:
    joined = "".join(s.sha256 for s in samples) + f"crop{CROP_PX}"
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def load_bags(samples: Sequence[Sample], cache_dir: Path | None = None) -> Bags:
    """``read_bags``, kept in ``cache_dir`` (keyed by the samples' checksums) when given."""
    path = None if cache_dir is None else cache_dir / f"cell-bags-{_key(samples)}.npz"
    if path is not None and path.exists():
        with np.load(path) as data:
            return Bags(**{k: data[k] for k in data.files})
    bags = read_bags(samples)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **bags.__dict__)
        log.info("cached the cell crops in %s", path)
    return bags
