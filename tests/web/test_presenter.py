"""The presenter: a prediction in a clinician's words and as the API's JSON."""

from __future__ import annotations

import base64
import json

import pytest

from app.core.model_card import ModelCard
from app.core.service import InferenceService
from app.web.analysis.presenter import (
    class_verdict,
    model_json,
    prediction_json,
    probability_bars,
    result_page,
    subtype_json,
)

JSON_KEYS = [
    "class",
    "label",
    "malignant",
    "verdict",
    "status",
    "verdict_detail",
    "subtype",
    "confidence",
    "out_of_distribution",
    "ood",
    "uncertain",
    "uncertain_below",
    "probabilities",
    "malignant_probability",
    "leans_malignant",
    "model",
    "elapsed_ms",
    "timings_ms",
    "image",
    "scale",
    "unit",
]


def test_class_verdict_wording_calls_a_subtype_a_pattern() -> None:
    assert class_verdict("benign") == "Benign: hematogones"
    assert class_verdict("pre_b") == "Blasts suspected: pattern most like Pre-B ALL"
    assert class_verdict("early_pre_b") == "Blasts suspected: pattern most like Early Pre-B ALL"
    assert class_verdict("pro_b") == "Blasts suspected: pattern most like Pro-B ALL"


def test_the_subtype_field_says_it_is_a_morphological_pattern() -> None:
    assert subtype_json("benign", malignant=False) is None
    assert subtype_json(None, malignant=True) is None
    subtype = subtype_json("pro_b", malignant=True)
    assert subtype is not None
    assert subtype["basis"] == "morphological_pattern"
    assert subtype["label"] == "Pro-B ALL"
    assert "flow cytometry" in subtype["note"]


def test_plain_prediction_json(inference_service: InferenceService, images) -> None:
    p = inference_service.classify(images.make())
    out = json.loads(json.dumps(prediction_json(p)))
    assert list(out) == JSON_KEYS  # the API's field order is part of its contract
    assert out["class"] == p.class_id
    assert out["status"] == p.status
    assert out["elapsed_ms"] == out["timings_ms"]["total"] == round(p.timings.total_ms, 2)
    assert set(out["timings_ms"]) <= {"decode", "preprocess", "model", "ood", "total"}
    blasts = sum(v for c, v in out["probabilities"].items() if c != "benign")
    assert out["malignant_probability"] == pytest.approx(blasts, abs=1e-6)
    assert out["leans_malignant"] == (blasts >= out["probabilities"]["benign"])


def test_explained_prediction_json_adds_cells_and_base64_pngs(
    inference_service: InferenceService, images
) -> None:
    p = inference_service.explain(inference_service.classify(images.make(size=(120, 80))))
    out = json.loads(json.dumps(prediction_json(p)))
    explanation = p.explanation
    assert explanation is not None
    assert list(out) == [*JSON_KEYS, "segmentation", "explanation"]
    assert out["segmentation"]["count"] == explanation.cells.count
    assert base64.b64decode(out["explanation"]["gradcam_png"]) == explanation.gradcam_png
    assert base64.b64decode(out["explanation"]["cells_png"]) == explanation.cells_png
    assert out["explanation"]["gradcam_class"] == p.class_id
    steps = out["timings_ms"]
    assert {"segmentation", "gradcam", "outline"} <= set(steps)
    assert steps["total"] == round(p.timings.total_ms + explanation.total_ms, 2)


def test_result_page_needs_an_explanation(inference_service: InferenceService, images) -> None:
    p = inference_service.classify(images.make())
    with pytest.raises(ValueError, match="explained prediction"):
        result_page(p)
    page = result_page(inference_service.explain(p))
    assert page.thumbnail.startswith("data:image/jpeg;base64,")
    assert page.gradcam.startswith("data:image/png;base64,")
    assert [b.class_id for b in page.bars] == [b.class_id for b in probability_bars(p)]
    assert sum(b.top for b in page.bars) == 1


def test_model_json_is_the_card_without_history(inference_service: InferenceService) -> None:
    card: ModelCard = inference_service.models()[0]
    out = model_json(card)
    assert "history" not in out
    assert out["display_name"] == card.display_name
    assert out["views"] == card.views
    expected = {k: v for k, v in card.to_dict().items() if k != "history"}
    assert {k: out[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (1.0, ">99.9%"),
        (0.9995, ">99.9%"),
        (0.999, "99.9%"),
        (0.5, "50.0%"),
        (0.001, "0.1%"),
        (0.0009, "<0.1%"),
        (0.0, "<0.1%"),
    ],
)
def test_probabilities_never_read_as_certainties(p: float, text: str) -> None:
    from app.web.analysis.presenter import percent

    assert percent(p) == text
