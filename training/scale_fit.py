"""The training photographs' cell scale (for the model cards) and the scale estimate's error."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.core.model_card import ScaleSpec
from app.core.preprocessing import load_image
from app.core.scale import measure_cells
from training.data import Sample
from training.markdown import table
from training.progress import track

log = logging.getLogger(__name__)

METHOD = (
    "app.core.scale.measure_cells on the train split: 6 x the mean distance from a cell pixel "
    "to the background; range = 2.5th to 97.5th percentile, reference = median"
)
# Factors by which the report rescales test images to check the estimate.
KNOWN_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.25, 1.5, 2.0)
RANGE_PERCENTILES = (2.5, 97.5)


def field_sizes(samples: Sequence[Sample], field_px: int) -> np.ndarray:
    """Each sample's cell size in pixels of a ``field_px`` field (NaN where unmeasurable)."""
    sizes = np.full(len(samples), np.nan)
    for i, sample in enumerate(track(samples, f"measuring cells in {len(samples)} images")):
        image = load_image(sample.path)
        measured = measure_cells(image)
        if measured.size_px is not None:
            sizes[i] = measured.size_px * field_px / min(image.size)
    return sizes


def fit_scale(train: Sequence[Sample], field_px: int = 224) -> ScaleSpec | None:
    """The scale range of the training photographs, for every model trained on them;
    None when most of them cannot be measured (the model then gets no scale check)."""
    sizes = field_sizes(train, field_px)
    measured = sizes[~np.isnan(sizes)]
    if measured.size < len(train) / 2:
        log.warning(
            "the cells of %d of %d training images could not be measured: "
            "no scale check for this model",
            len(train) - measured.size,
            len(train),
        )
        return None
    low, high = np.percentile(measured, RANGE_PERCENTILES)
    return ScaleSpec(
        method=METHOD,
        field_px=field_px,
        reference_px=round(float(np.median(measured)), 3),
        low_px=round(float(low), 3),
        high_px=round(float(high), 3),
        n_images=int(measured.size),
    )


@dataclass(frozen=True)
class ScaleError:
    """The estimate's relative error on images rescaled by one known factor."""

    factor: float
    n_images: int
    unmeasured: int
    median: float
    p95: float
    bias: float


def rescaled(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)


def estimate_errors(
    samples: Sequence[Sample], factors: Sequence[float] = KNOWN_FACTORS
) -> list[ScaleError]:
    """How far the measured size of a rescaled image is from factor x the original's."""
    errors: dict[float, list[float]] = {f: [] for f in factors}
    unmeasured = dict.fromkeys(factors, 0)
    for sample in track(samples, f"scale estimate on {len(samples)} images"):
        image = load_image(sample.path)
        base = measure_cells(image).size_px
        if base is None:
            continue
        for factor in factors:
            size = measure_cells(rescaled(image, factor)).size_px
            if size is None:
                unmeasured[factor] += 1
            else:
                errors[factor].append(size / (factor * base) - 1)
    out = []
    for factor in factors:
        e = np.array(errors[factor])
        out.append(
            ScaleError(
                factor=factor,
                n_images=int(e.size) + unmeasured[factor],
                unmeasured=unmeasured[factor],
                median=float(np.median(np.abs(e))) if e.size else float("nan"),
                p95=float(np.percentile(np.abs(e), 95)) if e.size else float("nan"),
                bias=float(np.median(e)) if e.size else float("nan"),
            )
        )
    return out


def scale_markdown(errors: Sequence[ScaleError], spec: ScaleSpec | None) -> str:
    """The report's section on the scale estimate."""
    rows = [
        [
            f"{e.factor:g}",
            e.n_images,
            e.unmeasured,
            f"{100 * e.median:.1f}%",
            f"{100 * e.p95:.1f}%",
            f"{100 * e.bias:+.1f}%",
        ]
        for e in errors
    ]
    out = [
        "## Physical scale of the cells",
        "",
        "`app/core/scale.py` measures how large the cells are in each photograph (red and "
        "white cells, after flattening uneven illumination and the background's colour). "
        "Error of that estimate on the test images rescaled by a known factor: the relative "
        "difference between the size measured on the rescaled image and factor x the size "
        "measured on the original (`python -m training report`).",
        "",
        table(
            ["factor", "images", "unmeasured", "median error", "95th percentile", "median bias"],
            rows,
        ),
        "",
    ]
    if spec is not None:
        out += [
            f"Training photographs ({spec.n_images} of the train split, in pixels of the "
            f"{spec.field_px} px field): median {spec.reference_px:.1f} px, 95% between "
            f"{spec.low_px:.1f} and {spec.high_px:.1f} px. The cells' measured size varies "
            "that much within the training set (it mixes red cells and leukocytes, and "
            "Pro-B fields measure smaller), so a photograph within that range is used as it "
            "is; one outside is resampled to the nearer end of the range, and refused when "
            f"that takes more than {spec.max_resample:g}x, with the reason and the fix.",
            "",
        ]
    return "\n".join(out)
