"""InferenceService on the real models: result type, calibration, timings, threads."""

from __future__ import annotations

import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.core.errors import AnalysisRefusedError, NoModelsError, NotReadyError, UnknownModelError
from app.core.model_files import model_names
from app.core.prediction import Prediction
from app.core.preprocessing import load_image, prepare
from app.core.service import InferenceService
from tests.support.models import field_cards


def test_every_model_is_loaded_and_ready(inference_service: InferenceService, models_dir) -> None:
    assert inference_service.ready
    names = [card.name for card in inference_service.models()]
    assert names == model_names(models_dir)
    assert "lenet" in names
    for card in inference_service.models():
        assert card.version
        assert card.display_name
        assert card.input_size > 0
        assert card.test_accuracy is not None
        assert 0.0 <= card.test_accuracy <= 1.0
        served = inference_service.served(card.name)
        assert served.card is card
        assert served.model.name == card.name


def test_classification_is_complete_and_calibrated(
    inference_service: InferenceService, images
) -> None:
    for card in field_cards(inference_service):
        p = inference_service.classify(images.make("JPEG"), card.name)
        assert list(p.probabilities) == list(CLASS_IDS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
        assert p.class_id == max(p.probabilities, key=p.probabilities.__getitem__)
        assert p.label == DISPLAY_NAMES[p.class_id]
        assert p.malignant is MALIGNANT[p.class_id]
        assert p.model is card
        assert p.network_input().shape == (card.input_size, card.input_size, 3)
        assert p.explanation is None
        t = p.timings
        steps = [t.decode_ms, t.preprocess_ms, t.model_ms]
        if inference_service.served(card.name).guard is not None:
            assert t.ood_ms is not None
            steps.append(t.ood_ms)
        else:
            assert t.ood_ms is None
        assert all(step > 0 for step in steps), t
        assert t.total_ms == pytest.approx(sum(steps), rel=1e-3, abs=0.05)
        assert p.total_ms == t.total_ms


def test_explanation_is_a_separate_step(inference_service: InferenceService, images) -> None:
    for card in field_cards(inference_service):
        plain = inference_service.classify(images.make("JPEG", size=(300, 200)), card.name)
        p = inference_service.explain(plain)
        assert plain.explanation is None  # the classification itself is left as it was
        assert dataclasses.replace(p, explanation=None) == plain
        e = p.explanation
        assert e is not None
        assert e.gradcam_class == p.class_id
        for png in (e.gradcam_png, e.cells_png):
            shown = Image.open(io.BytesIO(png))
            # Drawn on the field the model saw: the centre square.
            assert shown.format == "PNG"
            assert shown.size == (200, 200)
        # The synthetic smear has one violet leukocyte in its middle.
        assert e.cells.count == 1
        x0, y0, x1, y1 = e.cells.cells[0].bbox
        assert x0 < 100 < x1
        assert y0 < 100 < y1
        assert e.segmentation_ms > 0
        assert e.gradcam_ms > 0
        assert e.outline_ms > 0
        assert p.total_ms == pytest.approx(p.timings.total_ms + e.total_ms)
        assert (
            inference_service.predict(
                images.make("JPEG", size=(300, 200)), card.name, explain=True
            ).explanation
            is not None
        )


def test_served_probabilities_equal_the_model_store(
    inference_service: InferenceService, images
) -> None:
    """The service adds nothing of its own: same preprocessing, same calibrated softmax."""
    data = images.make("PNG", size=(200, 120))
    for card in field_cards(inference_service):
        loaded = inference_service.field_model(card.name).model
        seen = prepare(load_image(data), loaded.input_size, card.scale)
        expected = loaded.predict(seen.x)[0]
        got = inference_service.classify(data, card.name).probabilities
        np.testing.assert_allclose([got[c] for c in loaded.class_ids], expected, atol=1e-6)


def test_default_and_unknown_model(inference_service: InferenceService, images) -> None:
    assert inference_service.classify(images.make()).model.name == "lenet"
    assert inference_service.resolve(" LeNet ") == "lenet"
    with pytest.raises(UnknownModelError, match="choose one of"):
        inference_service.classify(images.make(), "resnet")


def test_exif_orientation_is_applied(inference_service: InferenceService, images) -> None:
    image = images.smear((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    p = inference_service.classify(images.encode(image, "JPEG", exif=exif.tobytes()))
    assert p.pixels()[0].size == (40, 80)


def test_not_ready_until_loaded(models_dir) -> None:
    service = InferenceService(models_dir)
    assert not service.ready
    with pytest.raises(NotReadyError):
        service.classify(b"anything")
    with pytest.raises(NotReadyError):
        service.models()


def test_no_models_and_missing_default(tmp_path, models_dir) -> None:
    with pytest.raises(NoModelsError, match="no models in"):
        InferenceService(tmp_path).load()
    with pytest.raises(NoModelsError, match="default model 'nope'"):
        InferenceService(models_dir, default_model="nope").load()


def test_another_default_shares_the_loaded_models(inference_service: InferenceService) -> None:
    names = [card.name for card in inference_service.models()]
    other_name = next(n for n in names if n != inference_service.default_model)
    other = inference_service.with_default(other_name)
    assert other.ready
    assert other.default_model == other_name
    assert inference_service.default_model != other_name
    assert all(other.served(n) is inference_service.served(n) for n in names)
    with pytest.raises(NoModelsError, match="default model 'nope'"):
        inference_service.with_default("nope")


def test_concurrent_predictions_match_sequential(
    inference_service: InferenceService, images
) -> None:
    uploads = [images.make("PNG", size=(90, 90), seed=i) for i in range(8)]
    models = [card.name for card in field_cards(inference_service)]
    jobs = [(img, models[i % len(models)]) for i, img in enumerate(uploads)]
    sequential = [inference_service.classify(d, m).probabilities for d, m in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda job: inference_service.classify(*job).probabilities, jobs))
    for a, b in zip(sequential, parallel, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


@pytest.mark.data
def test_real_smears_match_model_store(inference_service: InferenceService, smear_images) -> None:
    for paths in smear_images.values():
        for path in paths[:1]:
            for card in field_cards(inference_service):
                loaded = inference_service.field_model(card.name).model
                seen = prepare(load_image(path), loaded.input_size, card.scale)
                expected = loaded.predict(seen.x)[0]
                p = inference_service.classify(path.read_bytes(), card.name)
                got = [p.probabilities[c] for c in loaded.class_ids]
                np.testing.assert_allclose(got, expected, atol=1e-6)
                assert p.pixels()[0].size == (224, 224)
                assert p.image_format == "JPEG"


@pytest.mark.data
def test_a_batch_answers_as_one_image_at_a_time(
    inference_service: InferenceService, smear_images, monkeypatch
) -> None:
    """The batch path works out the guard's statistics on the image threads beside the model
    pass; its probabilities, guard scores and refusals are those of single classifications."""
    monkeypatch.setenv("IMAGE_THREADS", "2")
    uploads = [p.read_bytes() for paths in smear_images.values() for p in paths[:2]]
    uploads.insert(2, b"not an image")
    for card in field_cards(inference_service):
        batch = inference_service.classify_many(uploads, card.name)
        assert len(batch) == len(uploads)
        assert isinstance(batch[2], AnalysisRefusedError)
        assert batch[2].code == "unsupported_media_type"
        for data, got in zip(uploads[:2] + uploads[3:], batch[:2] + batch[3:], strict=True):
            alone = inference_service.classify(data, card.name)
            assert isinstance(got, Prediction)
            assert got.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
            assert got.ood is not None
            assert alone.ood is not None
            # A batched forward pass rounds the features a little differently.
            assert got.ood.score == pytest.approx(alone.ood.score, rel=1e-4)
            assert got.timings.ood_ms is not None
            assert got.timings.ood_ms > 0
