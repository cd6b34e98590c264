"""Which of the guard's image statistics flag which photographs: on validation photographs only.

The out-of-distribution guard's image component is one Gaussian over the statistics of
``app.core.guards.image_stats`` (fitted on the train split, scaled by a validation quantile,
``training.ood``). This fits the same Gaussian on subsets of those statistics and reports,
for each subset, the share of validation photographs it flags after each of the fixed
variants the uncertain rule is fitted on (``training.perturbations``, with additive noise)
and of the foreign images (``training.foreign``, made from validation smears). A subset
worth serving flags the foreign kinds and few variants. The capture suite's transforms are
kept out of it, so that suite still measures captures no choice was made on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.errors import CaptureError
from app.core.guards.image_stats import TEXTURE_OFFSETS, field_statistics, image_statistics
from app.core.guards.ood import min_mahalanobis
from app.core.model_card import ModelCard
from app.core.preprocessing import ImageSource, load_image, prepare
from training.foreign import foreign_set
from training.metrics import wilson
from training.ood import VAL_QUANTILE, fit_gaussian
from training.perturbations import PERTURBATIONS

# The texture profile measured here: the served offsets and the finer ones they replaced.
PROFILED_OFFSETS = (1, 2, 4, 8, 16)
if not set(TEXTURE_OFFSETS) <= set(PROFILED_OFFSETS):
    raise ImportError(f"the served offsets {TEXTURE_OFFSETS} must be among {PROFILED_OFFSETS}")
# The statistics' columns, counted on a blank image; the texture profile is the last few.
N_STATISTICS = len(image_statistics(np.full((32, 32, 3), 0.5, np.float32), PROFILED_OFFSETS))
PROFILE_COLUMNS = dict(
    zip(PROFILED_OFFSETS, range(N_STATISTICS - len(PROFILED_OFFSETS), N_STATISTICS), strict=True)
)
_UNSERVED = [d for d in PROFILED_OFFSETS if d not in TEXTURE_OFFSETS]


def _without(offsets: Iterable[int]) -> list[int]:
    dropped = {PROFILE_COLUMNS[d] for d in offsets}
    return [c for c in range(N_STATISTICS) if c not in dropped]


def _px(offsets: Sequence[int]) -> str:
    return ", ".join(map(str, offsets[:-1])) + f" and {offsets[-1]} px"


SUBSETS: dict[str, list[int]] = {
    f"served: the texture at {_px(TEXTURE_OFFSETS)}": _without(_UNSERVED),
    f"with the texture at {_px(_UNSERVED)} too": list(range(N_STATISTICS)),
    "without the texture profile": _without(PROFILED_OFFSETS),
}


@dataclass(frozen=True)
class FlagRates:
    """subset -> set -> share of the set's photographs flagged; ``counts``: each set's
    photographs (those the scale check refused left out)."""

    rates: dict[str, dict[str, float]]
    counts: dict[str, int]


def statistics_of(image: Image.Image, card: ModelCard) -> np.ndarray:
    """The guard's statistics of a photograph as the served path makes them, with the whole
    profiled texture (CaptureError when the scale check refuses it)."""
    return field_statistics(prepare(image, card.input_size, card.scale).field, PROFILED_OFFSETS)


def flag_rates(
    train: np.ndarray,
    val: np.ndarray,
    captured: dict[str, np.ndarray],
    subsets: dict[str, list[int]] = SUBSETS,
) -> FlagRates:
    """For each subset of columns: a Gaussian fitted on ``train``, its distances scaled by
    the validation quantile the guard uses, and the share of each set's rows above it."""
    rates: dict[str, dict[str, float]] = {}
    for name, columns in subsets.items():
        mean, precision, _ = fit_gaussian(train[:, columns])
        distance = min_mahalanobis(val[:, columns], mean[None, :], precision)
        scale = float(np.quantile(distance, VAL_QUANTILE))
        rates[name] = {
            set_name: float(
                (min_mahalanobis(rows[:, columns], mean[None, :], precision) > scale).mean()
            )
            if len(rows)
            else float("nan")  # every one refused by the scale check
            for set_name, rows in captured.items()
        }
    return FlagRates(rates, {name: len(rows) for name, rows in captured.items()})


def _usable(images: Iterable[Image.Image], card: ModelCard) -> np.ndarray:
    """The statistics of each image the scale check does not refuse, a row each."""
    rows = []
    for image in images:
        try:
            rows.append(statistics_of(image, card))
        except CaptureError:
            continue
    return np.array(rows).reshape(-1, N_STATISTICS)


def usable_statistics(paths: Sequence[ImageSource], card: ModelCard) -> np.ndarray:
    """``_usable`` of photographs on disk, decoded one at a time."""
    return _usable((load_image(path) for path in paths), card)


def _on_pixels(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Image.Image], Image.Image]:
    """A perturbation of float pixels in [0, 1] as one of PIL images."""

    def apply(image: Image.Image) -> Image.Image:
        out = fn(np.asarray(image, dtype=np.float32) / 255.0)
        return Image.fromarray(np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8))

    return apply


def _additive_noise(x: np.ndarray, sigma: float = 8 / 255) -> np.ndarray:
    """Independent Gaussian noise (seeded per image size, so a run repeats)."""
    rng = np.random.default_rng(x.size)
    return x + rng.normal(0.0, sigma, x.shape).astype(np.float32)


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as is": lambda image: image,
    **{name: _on_pixels(fn) for name, fn in PERTURBATIONS.items() if name != "scale_bar_masked"},
    "additive_noise": _on_pixels(_additive_noise),
}


def variant_statistics(paths: Sequence[ImageSource], card: ModelCard) -> dict[str, np.ndarray]:
    """Each variant's statistics of the photographs (each decoded once), the ones the scale
    check refuses left out."""
    images = [load_image(path) for path in paths]
    return {name: _usable(map(variant, images), card) for name, variant in VARIANTS.items()}


def foreign_statistics(
    smears: Sequence[str | Path], card: ModelCard, seed: int = 0
) -> dict[str, np.ndarray]:
    """The foreign set's statistics by kind (``foreign: <kind>``), made from ``smears``;
    the images the scale check refuses are left out (they are never answered)."""
    by_kind: dict[str, list[Image.Image]] = {}
    for item in foreign_set(smears, seed):
        by_kind.setdefault(f"foreign: {item.kind}", []).append(item.image)
    return {kind: _usable(images, card) for kind, images in by_kind.items()}


def markdown(result: FlagRates, sets: Sequence[str]) -> str:
    """A row per subset, a column per set (its photographs in brackets); each share with
    its Wilson 95% interval, "-" where the scale check refused the whole set."""

    def cell(rate: float, n: int) -> str:
        if not n:
            return "-"
        low, high = wilson(round(rate * n), n)
        return f"{100 * rate:.0f}% ({100 * low:.0f}-{100 * high:.0f})"

    head = "| statistics | " + " | ".join(f"{s} ({result.counts[s]})" for s in sets) + " |"
    lines = [head, "|---|" + "---|" * len(sets)]
    for name, by_set in result.rates.items():
        cells = " | ".join(cell(by_set[s], result.counts[s]) for s in sets)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)
