"""The out-of-distribution guard of a cell model: pooled cell features and image statistics.

Fitted like a field model's guard (``training.ood``): a class-conditional Gaussian over the
field's attention-pooled cell features and one Gaussian over the photograph's image
statistics, both on the train split, each scaled by its validation quantile; measured on
the test split and on the foreign set made from test smears.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.core.cells.crops import CROP_PX, read_photograph
from app.core.cells.model import FieldAnswer, LoadedCellModel
from app.core.classes import CLASS_IDS
from app.core.errors import AnalysisRefusedError
from app.core.guards.image_stats import field_statistics
from app.core.guards.ood import COMPONENTS, OodGuard
from app.core.model_card import OodSection
from app.core.model_files import model_files
from app.core.preprocessing import load_image
from training.data import Sample
from training.foreign import foreign_set
from training.ood import MIN_SCALE, VAL_QUANTILE, fit_class_gaussians, fit_gaussian, write_guard


def field_statistics_of(samples: list[Sample], indices: np.ndarray) -> np.ndarray:
    """The guard's image statistics of each photograph of ``indices``, a row each."""
    return np.stack([field_statistics(load_image(samples[int(i)].path)) for i in indices])


def photograph_answer(loaded: LoadedCellModel, image: Image.Image) -> FieldAnswer | None:
    """The cell path's answer to one photograph; None when it is refused or reads no cell."""
    try:
        cells = read_photograph(image)
    except AnalysisRefusedError:
        return None
    if not cells.used:
        return None
    return loaded.answer(loaded.run(cells.crops))


def _features_and_stats(
    loaded: LoadedCellModel, image: Image.Image
) -> tuple[np.ndarray, np.ndarray] | None:
    answer = photograph_answer(loaded, image)
    return None if answer is None else (answer.features, field_statistics(image))


def fit_cell_guard(
    out: Path, loaded: LoadedCellModel, samples: list[Sample], data: dict[str, Any]
) -> OodSection:
    """The out-of-distribution guard on pooled cell features and image statistics."""
    train, val, test = data["train"], data["val"], data["test"]
    y_train = np.array([samples[int(i)].label for i in train["index"]])
    f_means, f_prec, f_shrink = fit_class_gaussians(train["features"], y_train, len(CLASS_IDS))
    i_mean, i_prec, i_shrink = fit_gaussian(train["stats"])
    guard = OodGuard(
        loaded.name,
        f_means,
        f_prec,
        i_mean[None, :],
        i_prec,
        {k: 1.0 for k in COMPONENTS},
        1.0,
        CROP_PX,
    )
    raw_val = guard.components(val["features"], val["stats"])
    guard.scales = {
        k: max(float(np.quantile(raw_val[k], VAL_QUANTILE)), MIN_SCALE) for k in COMPONENTS
    }

    def combined(part: dict[str, Any]) -> np.ndarray:
        parts = guard.components(part["features"], part["stats"])
        return np.asarray(np.max(np.stack([parts[k] for k in COMPONENTS]), axis=0))

    guard.threshold = float(np.quantile(combined(val), VAL_QUANTILE))
    smears = sorted((samples[int(i)] for i in test["index"]), key=lambda s: s.sha256)[:12]
    foreign = foreign_set([s.path for s in smears])
    flags: list[bool] = []
    kinds: dict[str, list[bool]] = {}
    for image in foreign:
        read = _features_and_stats(loaded, image.image)
        flagged = read is None or bool(
            max(v[0] for v in guard.components(read[0][None], read[1][None]).values())
            > guard.threshold
        )
        flags.append(flagged)
        kinds.setdefault(image.kind, []).append(flagged)
    path = model_files(out, loaded.name).ood
    write_guard(path, f_means, f_prec, i_mean, i_prec)
    test_scaled = guard.components(test["features"], test["stats"])
    return OodSection(
        method=(
            "max of two Mahalanobis distances, each divided by its validation "
            f"{VAL_QUANTILE:.1%} quantile: (1) the field's attention-pooled cell features to "
            "the nearest class-conditional Gaussian (shared Ledoit-Wolf covariance), (2) the "
            "photograph's colour and texture statistics to one Gaussian; fitted on the train "
            "split; a photograph the cell path refuses counts as flagged in the foreign set"
        ),
        feature_layer="embedding (attention-pooled over the field's cells)",
        file=path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        threshold=round(guard.threshold, 6),
        component_scales={k: round(v, 6) for k, v in guard.scales.items()},
        shrinkage={"features": round(f_shrink, 4), "image": round(i_shrink, 4)},
        val_quantile=VAL_QUANTILE,
        n_train=len(train["index"]),
        val_flag_rate=round(float((combined(val) > guard.threshold).mean()), 4),
        test_flag_rate=round(float((combined(test) > guard.threshold).mean()), 4),
        test_flag_rate_by_component={
            k: round(float((test_scaled[k] > guard.threshold).mean()), 4) for k in COMPONENTS
        },
        n_val=len(val["index"]),
        n_test=len(test["index"]),
        foreign_flag_rate=round(float(np.mean(flags)), 4),
        n_foreign=len(foreign),
        foreign_flag_rate_by_kind={k: round(float(np.mean(v)), 4) for k, v in kinds.items()},
        foreign_count_by_kind={k: len(v) for k, v in kinds.items()},
    )
