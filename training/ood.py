"""Fits the OOD guard and the "uncertain" confidence of a committed model.

Writes ``<name>.ood.npz`` (Gaussian means and precisions) and the ``ood`` section
plus the ``calibration.uncertain_*`` fields of the model's card; every other field
of the card is kept. The statistics come from the training split, the thresholds
from the validation split; the test split and the foreign set only measure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.core.guards.image_stats import STATS_SIZE
from app.core.guards.ood import (
    COMPONENTS,
    OodGuard,
    build_forward,
    image_statistics_of,
)
from app.core.model_card import OodSection
from app.core.model_files import model_files
from app.core.model_store import LoadedModel, load_model
from app.core.preprocessing import load_image
from app.core.runtime import penultimate_layer
from training.data import Sample, discover, prepared_or_whole
from training.evaluate import select_split
from training.foreign import KINDS, ForeignImage, foreign_set
from training.progress import track
from training.split import MANIFEST_NAME
from training.uncertain import fit_uncertain

VAL_QUANTILE = 0.975  # flag 2.5% of validation images: margin under the 5% test target
FOREIGN_SMEARS = 12
MIN_SCALE = 1e-6


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Covariance of centred rows ``x`` shrunk towards a scaled identity (Ledoit-Wolf)."""
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    target = mu * np.eye(p)
    d2 = float(((s - target) ** 2).sum())
    b2 = float(((x**2).sum(axis=1) ** 2).sum() - n * (s**2).sum()) / n**2
    shrinkage = 1.0 if d2 == 0 else min(max(b2, 0.0), d2) / d2
    return (1 - shrinkage) * s + shrinkage * target, shrinkage


def _precision(cov: np.ndarray) -> np.ndarray:
    # A tiny ridge keeps dead (always-zero) ReLU units from making it singular; a unit
    # ridge when every unit is dead (a collapsed model: any non-zero feature is foreign).
    mu = float(np.trace(cov)) / len(cov)
    ridge = 1e-6 * mu if mu > 0 else 1.0
    return np.linalg.inv(cov + ridge * np.eye(len(cov)))


def fit_class_gaussians(
    features: np.ndarray, y: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Class means and the precision of the shared (tied), shrunk covariance."""
    means = np.stack([features[y == k].mean(axis=0) for k in range(n_classes)])
    cov, shrinkage = ledoit_wolf(features - means[y])
    return means, _precision(cov), shrinkage


def fit_gaussian(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    mean = stats.mean(axis=0)
    cov, shrinkage = ledoit_wolf(stats - mean)
    return mean, _precision(cov), shrinkage


def extract(
    loaded: LoadedModel,
    forward: Any,
    images: Sequence[str | Path | Image.Image],
    chunk: int = 64,
    description: str = "features",
) -> tuple[np.ndarray, ...]:
    """Features, logits and image statistics of paths or PIL images, decoded once each."""
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    stats: list[np.ndarray] = []
    for start in track(range(0, len(images), chunk), f"{loaded.name}: {description}"):
        batch = [
            load_image(i) if isinstance(i, str | Path) else i for i in images[start : start + chunk]
        ]
        seen = [prepared_or_whole(im, loaded.input_size, loaded.card.scale) for im in batch]
        f, lg = forward(np.stack([s.x for s in seen]))
        feats.append(f.numpy())
        logits.append(lg.numpy())
        stats.append(image_statistics_of([s.field for s in seen]))
    return np.concatenate(feats), np.concatenate(logits), np.concatenate(stats)


def write_guard(
    path: Path,
    feature_means: np.ndarray,
    feature_precision: np.ndarray,
    image_mean: np.ndarray,
    image_precision: np.ndarray,
) -> None:
    """The guard's fitted Gaussians, as ``OodGuard.load`` reads them."""
    with path.open("wb") as fh:
        np.savez_compressed(
            fh,
            feature_means=feature_means.astype(np.float32),
            feature_precision=feature_precision.astype(np.float32),
            image_mean=image_mean.astype(np.float32),
            image_precision=image_precision.astype(np.float32),
        )


def _split(samples: list[Sample], manifest: Path, name: str) -> list[Sample]:
    chosen = select_split(samples, manifest, name)
    if not chosen:
        raise ValueError(f"no image of the data folder is in the {name} split of {manifest}")
    return chosen


def _combined(parts: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(np.max(np.stack([parts[k] for k in COMPONENTS]), axis=0))


def fit_ood(
    models_dir: str | Path, name: str, data_dir: str | Path, samples: list[Sample] | None = None
) -> OodSection:
    """Fit, measure and write the guard of model ``name``; returns its ``ood`` section."""
    root = Path(models_dir)
    loaded = load_model(root, name)
    forward = build_forward(loaded.keras_model, loaded.input_size, loaded.views)
    samples = samples if samples is not None else discover(data_dir)
    manifest = root / MANIFEST_NAME
    parts = {s: _split(samples, manifest, s) for s in ("train", "val", "test")}
    data = {
        s: extract(loaded, forward, [p.path for p in v], description=f"{s} split")
        for s, v in parts.items()
    }
    y_train = np.array([p.label for p in parts["train"]])

    f_means, f_prec, f_shrink = fit_class_gaussians(
        data["train"][0], y_train, len(loaded.class_ids)
    )
    i_mean, i_prec, i_shrink = fit_gaussian(data["train"][2])
    guard = OodGuard(
        model_name=name,
        feature_means=f_means,
        feature_precision=f_prec,
        image_mean=i_mean[None, :],
        image_precision=i_prec,
        scales={k: 1.0 for k in COMPONENTS},
        threshold=1.0,
        input_size=loaded.input_size,
    )
    raw_val = guard.components(data["val"][0], data["val"][2])
    # Floored so a component that is zero on all validation images (dead features) stays finite.
    guard.scales = {
        k: max(float(np.quantile(raw_val[k], VAL_QUANTILE)), MIN_SCALE) for k in COMPONENTS
    }
    scaled = {s: guard.components(data[s][0], data[s][2]) for s in ("val", "test")}
    guard.threshold = float(np.quantile(_combined(scaled["val"]), VAL_QUANTILE))
    flagged = {s: _combined(scaled[s]) > guard.threshold for s in scaled}

    smears = sorted(parts["test"], key=lambda s: s.sha256)[:FOREIGN_SMEARS]
    foreign = foreign_set([s.path for s in smears])
    foreign_flags = score_foreign(guard, loaded, forward, foreign)

    npz_path = model_files(root, name).ood
    write_guard(npz_path, f_means, f_prec, i_mean, i_prec)
    kinds = [k for k in KINDS if any(f.kind == k for f in foreign)]
    section = OodSection(
        method=(
            "max of two Mahalanobis distances, each divided by its validation "
            f"{VAL_QUANTILE:.1%} quantile: (1) penultimate-layer features to the nearest "
            "class-conditional Gaussian (shared Ledoit-Wolf covariance), (2) colour and "
            f"texture statistics of the image at {STATS_SIZE}x{STATS_SIZE}, its illumination "
            "evened and its background brought to white first, to one Gaussian; fitted on "
            "the train split; flagged when above the threshold"
        ),
        feature_layer=penultimate_layer(loaded.keras_model).name,
        file=npz_path.name,
        sha256=hashlib.sha256(npz_path.read_bytes()).hexdigest(),
        threshold=round(guard.threshold, 6),
        component_scales={k: round(v, 6) for k, v in guard.scales.items()},
        shrinkage={"features": round(f_shrink, 4), "image": round(i_shrink, 4)},
        val_quantile=VAL_QUANTILE,
        n_train=len(parts["train"]),
        val_flag_rate=round(float(flagged["val"].mean()), 4),
        test_flag_rate=round(float(flagged["test"].mean()), 4),
        test_flag_rate_by_component={
            k: round(float((scaled["test"][k] > guard.threshold).mean()), 4) for k in COMPONENTS
        },
        n_val=len(parts["val"]),
        n_test=len(parts["test"]),
        foreign_flag_rate=round(float(np.mean(foreign_flags)), 4),
        n_foreign=len(foreign),
        foreign_flag_rate_by_kind={
            k: round(
                float(
                    np.mean(
                        [f for f, img in zip(foreign_flags, foreign, strict=True) if img.kind == k]
                    )
                ),
                4,
            )
            for k in kinds
        },
        foreign_count_by_kind={k: sum(img.kind == k for img in foreign) for k in kinds},
    )
    card = loaded.card
    card.ood = section
    card.save(model_files(root, name).card)
    fit_uncertain(root, name, samples)
    return section


def score_foreign(
    guard: OodGuard, loaded: LoadedModel, forward: Any, foreign: list[ForeignImage]
) -> list[bool]:
    """Whether the guard flags each foreign image (batched, same maths as serving)."""
    feats, _, stats = extract(
        loaded, forward, [f.image for f in foreign], description="foreign set"
    )
    return list(_combined(guard.components(feats, stats)) > guard.threshold)
