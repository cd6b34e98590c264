"""The case rule, and its fit and measure on simulated cases."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.case_verdict import FieldOutcome, case_verdict
from app.core.model_card import CaseRuleSpec
from training.capture import Outcomes
from training.case_eval import draw_cases, field_outcomes, fit_case_rule, score_cases

RULE = CaseRuleSpec(min_used_share=1 / 3, min_agreement=0.7)


def _field(class_id: str, p: float = 0.95, state: str = "answered") -> FieldOutcome:
    rest = (1 - p) / 3
    probs = {c: (p if c == class_id else rest) for c in ("benign", "early_pre_b", "pre_b", "pro_b")}
    return FieldOutcome(state, probs)  # type: ignore[arg-type]


def test_agreeing_fields_give_the_class_and_excluded_fields_are_counted() -> None:
    fields = [_field("pre_b")] * 4 + [
        _field("benign", 0.6, "uncertain"),
        _field("benign", 0.99, "out_of_distribution"),
        FieldOutcome("refused"),
    ]
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "malignant" and verdict.class_id == "pre_b"
    assert verdict.n_fields == 7 and verdict.n_used == 4
    assert verdict.excluded == {"uncertain": 1, "out_of_distribution": 1, "refused": 1}
    assert verdict.agreement == 1.0 and verdict.votes == {"pre_b": 4}
    assert verdict.probabilities["pre_b"] == pytest.approx(0.95)


def test_disagreeing_fields_make_the_case_uncertain_and_say_so() -> None:
    fields = [_field("benign")] * 3 + [_field("pro_b")] * 2
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "uncertain" and verdict.class_id == "benign"
    assert verdict.agreement == pytest.approx(0.6)
    assert verdict.votes == {"benign": 3, "pro_b": 2}
    assert verdict.reason is not None and "disagree" in verdict.reason
    assert case_verdict(fields, CaseRuleSpec(min_agreement=0.5)).status == "benign"


def test_too_few_usable_fields_make_the_case_uncertain() -> None:
    fields = [_field("pre_b")] + [FieldOutcome("refused")] * 3
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "uncertain" and verdict.reason is not None
    assert "only 1 of 4 fields" in verdict.reason
    empty = case_verdict([], RULE)
    assert empty.status == "uncertain" and empty.class_id is None and empty.n_used == 0


def _outcomes(labels: list[int], predicted: list[int], confidence: float = 0.99) -> Outcomes:
    n = len(labels)
    probs = np.full((n, 4), (1 - confidence) / 3)
    probs[np.arange(n), predicted] = confidence
    return Outcomes(
        labels=np.array(labels),
        refused=np.zeros(n, bool),
        ood=np.zeros(n, bool),
        predicted=np.array(predicted),
        confidence=np.full(n, confidence),
        probabilities=probs,
    )


def test_simulated_cases_draw_k_distinct_fields_of_one_class() -> None:
    labels = np.repeat(np.arange(4), 25)
    cases = draw_cases(labels, k=10, per_class=30)
    assert len(cases) == 120
    for label, picks in cases:
        assert len(set(picks.tolist())) == 10 and (labels[picks] == label).all()
    assert draw_cases(labels, k=30, per_class=5) == []  # no class has 30 images


def test_case_scores_and_the_fitted_threshold_follow_the_field_errors() -> None:
    labels = [c for c in range(4) for _ in range(30)]
    # Class 3: a third of its fields are called class 0 with full confidence.
    predicted = [0 if c == 3 and i % 3 == 0 else c for c in range(4) for i in range(30)]
    o = _outcomes(labels, predicted)
    fields = field_outcomes(o, uncertain_below=0.9)
    lenient = score_cases(fields, draw_cases(o.labels, 5), CaseRuleSpec(min_agreement=0.5))
    assert lenient.silent_errors > 0.005  # some class-3 cases come out as class 0
    fitted = fit_case_rule([(o, 0.9)])
    assert fitted.min_agreement > 0.5
    assert fitted.val_silent_error_rate is not None and fitted.val_silent_error_rate <= 0.005
    strict = score_cases(fields, draw_cases(o.labels, 5), fitted)
    assert strict.silent_errors <= lenient.silent_errors and strict.uncertain > 0
    assert strict.accuracy is not None and lenient.accuracy is not None
    assert strict.accuracy > lenient.accuracy
