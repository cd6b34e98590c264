"""The fitted OOD guard of the committed models: real smears pass, foreign images do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.guards.ood import OodGuard, OodNotFittedError
from app.core.model_files import model_files
from app.core.model_store import load_model
from app.core.preprocessing import load_image, to_model_input
from tests.support.models import field_model_names
from training.data import discover
from training.evaluate import select_split
from training.foreign import KINDS, foreign_set


@pytest.fixture(scope="module")
def fitted(models_dir: Path) -> list[str]:
    names = [n for n in field_model_names(models_dir) if model_files(models_dir, n).ood.is_file()]
    if not names:
        pytest.skip(f"no fitted OOD guard in {models_dir}: run python -m training fit-ood")
    return names


@pytest.fixture(scope="module")
def guard_and_model(models_dir: Path, fitted: list[str]):
    # The smallest input size is the fastest; every model is fitted the same way.
    loaded = [load_model(models_dir, n) for n in fitted]
    model = min(loaded, key=lambda m: m.input_size)
    return OodGuard.load(models_dir, model), model


def test_load_refuses_a_model_without_fitted_statistics(
    models_dir: Path, tmp_path: Path, fitted: list[str]
) -> None:
    name = fitted[0]
    for suffix in (".keras", ".json"):
        (tmp_path / f"{name}{suffix}").write_bytes((models_dir / f"{name}{suffix}").read_bytes())
    with pytest.raises(OodNotFittedError):
        OodGuard.load(tmp_path, load_model(tmp_path, name))


@pytest.mark.data
def test_guard_flags_few_real_test_images(
    guard_and_model, models_dir: Path, data_dir: Path
) -> None:
    guard, model = guard_and_model
    test = select_split(discover(data_dir), models_dir / "split.csv", "test")
    chosen = sorted(test, key=lambda s: s.sha256)[::4]  # a stable quarter of the test split
    flags = []
    for sample in chosen:
        image = load_image(sample.path)
        flags.append(
            guard.score(to_model_input(image, model.input_size), image).out_of_distribution
        )
    # The threshold flags 2.5% of validation images; allow sampling noise on ~110 images.
    assert np.mean(flags) <= 0.08, f"{sum(flags)} of {len(flags)} real test images flagged"


@pytest.mark.data
def test_guard_flags_constructed_foreign_images_of_every_kind(
    guard_and_model, models_dir: Path, data_dir: Path
) -> None:
    guard, model = guard_and_model
    test = select_split(discover(data_dir), models_dir / "split.csv", "test")
    smears = sorted(test, key=lambda s: s.sha256)[:6]
    foreign = foreign_set([s.path for s in smears], seed=7)  # another seed than the fit's
    assert {f.kind for f in foreign} == set(KINDS)
    by_kind: dict[str, list[bool]] = {}
    for f in foreign:
        result = guard.score(to_model_input(f.image, model.input_size), f.image)
        by_kind.setdefault(f.kind, []).append(result.out_of_distribution)
        if result.out_of_distribution:
            assert result.reasons
            assert result.score > result.threshold
    overall = np.mean([v for flags in by_kind.values() for v in flags])
    assert overall >= 0.9, {k: np.mean(v) for k, v in by_kind.items()}
    for kind in ("noise", "solid", "text", "checkerboard", "recoloured"):
        assert np.mean(by_kind[kind]) >= 0.9, (kind, by_kind[kind])


@pytest.mark.data
def test_one_forward_pass_gives_the_same_result_and_probabilities(
    guard_and_model, smear_images
) -> None:
    guard, model = guard_and_model
    image = load_image(smear_images["benign"][0])
    x = to_model_input(image, model.input_size)
    features, logits = guard.forward(x)
    assert np.allclose(logits, model.logits(x), atol=1e-4)
    assert guard.score_features(features, image) == guard.score(x, image)
    blank = Image.new("RGB", (224, 224), (255, 255, 255))
    assert guard.score(to_model_input(blank, model.input_size), blank).out_of_distribution
