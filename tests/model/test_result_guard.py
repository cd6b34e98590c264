"""The OOD guard and the "uncertain" rule as wired into InferenceService (real models)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.classes import CLASS_IDS
from app.core.errors import CaptureError
from app.core.guards.ood import OodResult
from app.core.prediction import Prediction
from app.core.service import InferenceService
from app.web.analysis.presenter import (
    OOD_VERDICT,
    UNCERTAIN_VERDICT,
    class_verdict,
    prediction_json,
    verdict,
    verdict_detail,
)
from tests.support.models import field_cards


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (224, 224)) -> bytes:
    return png(Image.new("RGB", size, colour))


def noise(seed: int, size: tuple[int, int] = (224, 224)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return png(Image.fromarray(pixels))


@pytest.fixture(scope="module")
def guarded(inference_service: InferenceService) -> list[str]:
    """Names of the served models that have a fitted OOD guard."""
    names = [
        card.name
        for card in field_cards(inference_service)
        if inference_service.served(card.name).guard is not None
    ]
    if not names:
        pytest.skip(
            f"no model in {inference_service.models_dir} has a fitted OOD guard "
            "(<name>.ood.npz); run `python -m training fit-ood`"
        )
    return names


@pytest.fixture(scope="module")
def unguarded_service(
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> InferenceService:
    """LeNet alone, without its .ood.npz and with no uncertain threshold in its metadata."""
    folder = tmp_path_factory.mktemp("unguarded")
    shutil.copy(models_dir / "lenet.keras", folder / "lenet.keras")
    meta = json.loads((models_dir / "lenet.json").read_text())
    meta.pop("ood", None)
    meta.get("calibration", {}).pop("uncertain_below", None)
    (folder / "lenet.json").write_text(json.dumps(meta))
    return InferenceService(folder)


def test_solid_colours_are_refused_before_any_model_runs(inference_service) -> None:
    for card in field_cards(inference_service):
        for colour in ((255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 40, 160)):
            with pytest.raises(CaptureError) as raised:
                inference_service.classify(solid(colour), card.name)
            assert raised.value.code == "scale_unmeasurable", (card.name, colour)


def classified_or_refused(
    service: InferenceService, data: bytes, name: str
) -> Prediction | CaptureError:
    try:
        return service.classify(data, name)
    except CaptureError as refused:
        return refused


def test_random_noise_is_refused_or_out_of_distribution(inference_service, guarded) -> None:
    for name in guarded:
        for seed in range(3):
            p = classified_or_refused(inference_service, noise(seed), name)
            if isinstance(p, CaptureError):
                assert p.status == 422
                assert p.fix
                continue
            assert p.out_of_distribution is True, (name, seed, p.ood)
            out = prediction_json(p)
            assert out["out_of_distribution"] is True
            assert out["verdict"] == OOD_VERDICT
            assert out["ood"]["available"] is True
            assert out["ood"]["score"] > out["ood"]["threshold"]


def test_the_guard_flags_solid_colours_where_the_scale_check_is_absent(guarded, models_dir) -> None:
    from app.core.guards.ood import OodGuard
    from app.core.model_store import load_model
    from app.core.preprocessing import to_model_input

    for name in guarded:
        loaded = load_model(models_dir, name)
        guard = OodGuard.load(models_dir, loaded)
        for colour in ((255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 40, 160)):
            image = Image.new("RGB", (224, 224), colour)
            result = guard.score(to_model_input(image, loaded.input_size), image)
            assert result.out_of_distribution is True, (name, colour, result)
            assert result.score > result.threshold
            assert result.reasons


@pytest.mark.data
def test_most_real_smears_are_in_distribution(inference_service, guarded, data_dir) -> None:
    rng = np.random.default_rng(0)  # a fixed random sample, 8 per class
    files = [
        p
        for folder in ("Benign", "Early", "Pre", "Pro")
        for p in rng.permutation(sorted((data_dir / folder).glob("*.jpg")))[:8]
    ]
    for name in guarded:
        flags = [
            inference_service.classify(f.read_bytes(), name).out_of_distribution for f in files
        ]
        assert all(isinstance(f, bool) for f in flags)
        # The threshold flags 2.5% of validation smears (a few % per class): 15% is far out.
        assert sum(flags) <= 0.15 * len(files), (name, sum(flags), len(files))


def test_one_forward_pass_when_the_guard_exists(
    inference_service, guarded, images, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = guarded[0]
    guard = inference_service.served(name).guard
    loaded = inference_service.served(name).model
    calls = {"forward": 0, "logits": 0}
    real_forward, real_logits = guard.forward, loaded.logits

    def counted_forward(x):
        calls["forward"] += 1
        return real_forward(x)

    def counted_logits(x):
        calls["logits"] += 1
        return real_logits(x)

    monkeypatch.setattr(guard, "forward", counted_forward)
    monkeypatch.setattr(loaded, "logits", counted_logits)
    p = inference_service.classify(images.make(), name)
    assert calls == {"forward": 1, "logits": 0}
    # ...and the probabilities are still exactly LoadedModel.predict's.
    monkeypatch.undo()
    expected = loaded.predict(p.network_input()[None])[0]
    np.testing.assert_allclose([p.probabilities[c] for c in CLASS_IDS], expected, atol=1e-9)


def test_calibrated_probabilities_sum_to_one_and_keep_the_ranking(
    inference_service, images
) -> None:
    for card in field_cards(inference_service):
        loaded = inference_service.served(card.name).model
        for seed in range(3):
            p = inference_service.classify(images.make(size=(120, 90), seed=seed), card.name)
            calibrated = np.array([p.probabilities[c] for c in CLASS_IDS])
            raw = loaded.predict(p.network_input()[None], calibrated=False)[0]
            assert calibrated.sum() == pytest.approx(1.0, abs=1e-9)
            assert list(np.argsort(-calibrated)) == list(np.argsort(-raw))


def test_uncertain_rule_follows_the_models_threshold(inference_service, images) -> None:
    p = inference_service.classify(images.make())
    top = p.confidence
    clear = dataclasses.replace(p, ood=None, uncertain_below=top - 1e-6)
    assert not clear.uncertain
    assert verdict(clear) == class_verdict(p.class_id)
    assert clear.status in ("malignant", "benign")
    assert verdict_detail(clear) is None
    unsure = dataclasses.replace(p, ood=None, uncertain_below=top + 1e-6)
    assert unsure.uncertain
    assert verdict(unsure) == UNCERTAIN_VERDICT
    assert unsure.status == "uncertain"
    detail = verdict_detail(unsure)
    assert detail is not None
    assert detail.startswith(f"Most likely {p.label} (")
    out = prediction_json(unsure)
    assert out["uncertain"] is True
    assert out["uncertain_below"] == pytest.approx(top + 1e-6)
    assert out["label"] == p.label  # the leading class is still named


def test_an_uncertain_benign_leader_with_more_blasts_says_it_leans_malignant(
    inference_service, images
) -> None:
    p = inference_service.classify(images.make())
    split = {"benign": 0.40, "early_pre_b": 0.15, "pre_b": 0.30, "pro_b": 0.15}
    unsure = dataclasses.replace(
        p, class_id="benign", probabilities=split, ood=None, uncertain_below=0.9
    )
    detail = verdict_detail(unsure)
    assert detail is not None
    assert detail.startswith("Most likely Benign (hematogones) (40.0%)")
    assert detail.endswith(
        "the three malignant patterns together hold 60.0%, so it leans malignant"
    )
    plain = {"benign": 0.60, "early_pre_b": 0.15, "pre_b": 0.15, "pro_b": 0.10}
    benign = dataclasses.replace(unsure, probabilities=plain)
    assert "leans malignant" not in (verdict_detail(benign) or "")
    out = prediction_json(unsure)
    assert (out["class"], out["malignant"], out["leans_malignant"]) == ("benign", False, True)
    assert out["malignant_probability"] == pytest.approx(0.60)
    assert prediction_json(benign)["leans_malignant"] is False


def test_out_of_distribution_outranks_uncertain(inference_service, images) -> None:
    p = inference_service.classify(images.make())
    flagged = OodResult(score=3.0, threshold=1.0, out_of_distribution=True, reasons=["x"])
    both = dataclasses.replace(p, ood=flagged, uncertain_below=1.01)
    assert both.uncertain
    assert verdict(both) == OOD_VERDICT
    passed = OodResult(score=0.5, threshold=1.0, out_of_distribution=False)
    assert verdict(dataclasses.replace(p, ood=passed, uncertain_below=1.01)) == UNCERTAIN_VERDICT


def test_served_uncertain_flag_matches_metadata(inference_service, images) -> None:
    for card in field_cards(inference_service):
        threshold = card.calibration.uncertain_below
        p = inference_service.classify(images.make(seed=5), card.name)
        assert p.uncertain_below == threshold
        expected = threshold is not None and p.confidence < threshold
        assert p.uncertain is expected
        assert prediction_json(p)["uncertain"] is expected


def test_model_without_guard_is_served_and_says_so(unguarded_service, images, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="app.core.service"):
        unguarded_service.load()
    assert any("without an out-of-distribution check" in r.getMessage() for r in caplog.records)
    assert unguarded_service.served("lenet").guard is None
    for data in (images.make(size=(224, 224)), images.make()):
        p = unguarded_service.classify(data)
        assert p.out_of_distribution is None
        assert p.ood is None
        out = prediction_json(p)
        assert out["out_of_distribution"] is None
        assert out["ood"]["available"] is False
        assert out["ood"]["score"] is None
        assert "not run" in out["ood"]["message"]
        # No threshold in the metadata: nothing is called uncertain, and the JSON says so.
        assert out["uncertain"] is False
        assert out["uncertain_below"] is None
        assert out["verdict"] == class_verdict(p.class_id)
        assert "ood" not in out["timings_ms"]
