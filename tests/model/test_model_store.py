"""The committed models and their cards: canonical cards, files that match, calibration."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from app.core.model_card import ModelCard
from app.core.model_files import model_files, model_names
from app.core.model_store import load_model
from tests.support.models import field_model_names
from training.architectures import ARCHITECTURES, FIELD_ARCHITECTURES
from training.split import MANIFEST_NAME


def test_every_registered_architecture_has_a_committed_model(models_dir: Path) -> None:
    assert field_model_names(models_dir) == sorted(FIELD_ARCHITECTURES)
    assert set(model_names(models_dir)) <= set(ARCHITECTURES)


def test_committed_cards_are_written_exactly_as_the_card_type_writes_them(models_dir: Path) -> None:
    # Fails when the card type changed and the cards were not upgraded
    # (python -m training upgrade-cards).
    for name in model_names(models_dir):
        path = model_files(models_dir, name).card
        assert ModelCard.load(path).to_json() == path.read_text(), name


def test_checksums_in_the_cards_match_the_files(models_dir: Path) -> None:
    for name in model_names(models_dir):
        files = model_files(models_dir, name)
        card = ModelCard.load(files.card)
        manifest = models_dir / card.split_manifest.file
        assert card.split_manifest.file == MANIFEST_NAME
        assert hashlib.sha256(manifest.read_bytes()).hexdigest() == card.split_manifest.sha256
        assert card.ood is not None
        assert card.ood.file == files.ood.name
        assert hashlib.sha256(files.ood.read_bytes()).hexdigest() == card.ood.sha256


def test_calibrated_probabilities_sum_to_one_and_keep_the_ranking(models_dir: Path) -> None:
    x = np.random.default_rng(3).random((8, 256, 256, 3)).astype(np.float32)
    for name in field_model_names(models_dir):
        model = load_model(models_dir, name)
        s = model.input_size
        batch = x[:, :s, :s]
        calibrated = model.predict(batch)
        raw = model.predict(batch, calibrated=False)
        assert np.allclose(calibrated.sum(axis=1), 1.0, atol=1e-9)
        assert np.array_equal(
            np.argsort(-calibrated, axis=1, kind="stable"), np.argsort(-raw, axis=1, kind="stable")
        )
        np.testing.assert_allclose(model.probabilities(model.logits(batch)), calibrated)
        if model.temperature > 1:  # softening: the top class gets less probability
            assert (calibrated.max(axis=1) <= raw.max(axis=1) + 1e-12).all()
        else:  # sharpening: it gets more
            assert (calibrated.max(axis=1) >= raw.max(axis=1) - 1e-12).all()
