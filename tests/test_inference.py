"""InferenceService on the real models: result type, calibration, timings, threads."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from app.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.inference import (
    ImageDecodeError,
    InferenceService,
    NoModelsError,
    NotReadyError,
    UnknownModelError,
    UnsupportedImageError,
    sniff_format,
    verdict,
)
from app.preprocessing import preprocess


def test_every_model_is_loaded_and_ready(inference_service: InferenceService, models_dir) -> None:
    assert inference_service.ready
    names = [m.name for m in inference_service.models()]
    assert names == sorted(p.stem for p in models_dir.glob("*.keras")
                           if p.with_suffix(".json").is_file())
    assert "lenet" in names
    for info in inference_service.models():
        assert info.version and info.display_name and info.input_size > 0
        assert 0.0 <= info.test_accuracy <= 1.0
        assert "history" not in info.public_dict()


def test_prediction_is_complete_and_calibrated(inference_service: InferenceService,
                                               images) -> None:
    for info in inference_service.models():
        p = inference_service.predict(images.make("JPEG"), info.name)
        assert list(p.probabilities) == list(CLASS_IDS)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
        assert p.class_id == max(p.probabilities, key=p.probabilities.get)
        assert p.label == DISPLAY_NAMES[p.class_id]
        assert p.malignant is MALIGNANT[p.class_id]
        assert p.model.name == info.name and p.model.version == info.version
        assert p.model_input.shape == (info.input_size, info.input_size, 3)
        t = p.timings
        steps = [t.decode_ms, t.preprocess_ms, t.model_ms]
        if inference_service.ood_guard(info.name) is not None:
            steps.append(t.ood_ms)
        else:
            assert t.ood_ms is None
        assert min(steps) >= 0
        assert t.segmentation_ms is None and t.gradcam_ms is None and t.outline_ms is None
        assert t.total_ms == pytest.approx(sum(steps), rel=1e-3, abs=0.05)
        assert p.cells is None and "explanation" not in p.extras


def test_explain_adds_pngs_and_their_timings(inference_service: InferenceService,
                                             images) -> None:
    for info in inference_service.models():
        p = inference_service.predict(images.make("JPEG", size=(300, 200)), info.name,
                                      explain=True)
        explanation = p.extras["explanation"]
        assert explanation["gradcam_class"] == p.class_id
        for key in ("gradcam_png", "cells_png"):
            shown = Image.open(io.BytesIO(explanation[key]))
            assert shown.format == "PNG" and shown.size == (300, 200)
        assert p.cells is not None and p.cells.count >= 0
        t = p.timings
        assert t.gradcam_ms > 0 and t.outline_ms > 0 and t.segmentation_ms > 0
        assert set(t.as_dict()) >= {"gradcam", "outline", "segmentation", "total"}


def test_served_probabilities_equal_the_model_store(inference_service: InferenceService,
                                                    images) -> None:
    """The service adds nothing of its own: same preprocessing, same calibrated softmax."""
    data = images.make("PNG", size=(200, 120))
    for info in inference_service.models():
        loaded = inference_service.loaded_model(info.name)
        expected = loaded.predict(preprocess(data, loaded.input_size))[0]
        got = inference_service.predict(data, info.name).probabilities
        np.testing.assert_allclose([got[c] for c in loaded.class_ids], expected, atol=1e-6)


def test_default_and_unknown_model(inference_service: InferenceService, images) -> None:
    assert inference_service.predict(images.make()).model.name == "lenet"
    assert inference_service.resolve(" LeNet ") == "lenet"
    with pytest.raises(UnknownModelError, match="choose one of"):
        inference_service.predict(images.make(), "resnet")


def test_exif_orientation_is_applied(inference_service: InferenceService, images) -> None:
    image = images.smear((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    p = inference_service.predict(images.encode(image, "JPEG", exif=exif.tobytes()))
    assert p.image.size == (40, 80)


def test_not_ready_until_loaded(models_dir) -> None:
    service = InferenceService(models_dir)
    assert not service.ready
    with pytest.raises(NotReadyError):
        service.predict(b"anything")


def test_no_models_and_missing_default(tmp_path, models_dir) -> None:
    with pytest.raises(NoModelsError, match="no models in"):
        InferenceService(tmp_path).load()
    with pytest.raises(NoModelsError, match="default model 'nope'"):
        InferenceService(models_dir, default_model="nope").load()


def test_concurrent_predictions_match_sequential(inference_service: InferenceService,
                                                  images) -> None:
    images = [images.make("PNG", size=(90, 90), seed=i) for i in range(8)]
    models = [m.name for m in inference_service.models()]
    jobs = [(img, models[i % len(models)]) for i, img in enumerate(images)]
    sequential = [inference_service.predict(d, m).probabilities for d, m in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda job: inference_service.predict(*job).probabilities, jobs))
    for a, b in zip(sequential, parallel, strict=True):
        assert a == pytest.approx(b, abs=1e-6)


def test_to_dict_is_json_and_carries_extras(inference_service: InferenceService,
                                            images) -> None:
    p = inference_service.predict(images.make())
    p.extras["explanation_png"] = b"\x89PNG"
    p.extras["ood"] = {"flag": False, "score": np.float32(0.25)}
    out = json.loads(json.dumps(p.to_dict()))
    assert out["class"] == p.class_id and out["verdict"] == p.verdict
    assert out["elapsed_ms"] == out["timings_ms"]["total"]
    assert out["explanation_png"] == "iVBORw=="
    assert out["ood"] == {"flag": False, "score": 0.25}


def test_verdict_wording() -> None:
    assert verdict("benign") == "Benign: hematogones"
    assert verdict("pre_b") == "Malignant: Pre-B ALL"
    assert verdict("early_pre_b") == "Malignant: Early Pre-B ALL"
    assert verdict("pro_b") == "Malignant: Pro-B ALL"


def test_format_sniffing_ignores_names_and_refuses_others(images) -> None:
    assert sniff_format(images.make("JPEG")) == "JPEG"
    assert sniff_format(images.make("PNG")) == "PNG"
    assert sniff_format(images.make("WEBP")) == "WEBP"
    with pytest.raises(UnsupportedImageError):
        sniff_format(b"%PDF-1.7 not an image")
    with pytest.raises(UnsupportedImageError):  # Pillow reads ICO, but it is not accepted
        sniff_format(images.make("ICO", size=(32, 32)))
    with pytest.raises(ImageDecodeError, match="empty"):
        sniff_format(b"")
    with pytest.raises(ImageDecodeError, match="damaged"):
        sniff_format(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)


@pytest.mark.data
def test_real_smears_match_model_store(inference_service: InferenceService,
                                       smear_images) -> None:
    for paths in smear_images.values():
        for path in paths[:1]:
            for info in inference_service.models():
                loaded = inference_service.loaded_model(info.name)
                expected = loaded.predict(preprocess(path, loaded.input_size))[0]
                p = inference_service.predict(path.read_bytes(), info.name)
                got = [p.probabilities[c] for c in loaded.class_ids]
                np.testing.assert_allclose(got, expected, atol=1e-6)
                assert p.image.size == (224, 224) and p.image_format == "JPEG"
