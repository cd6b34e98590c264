"""A case's verdict in words: escalation with its evidence, subtype disagreement, and
uncertain fields never hidden behind an agreement figure."""

from __future__ import annotations

from app.core.case_verdict import FieldOutcome, case_verdict
from app.core.case_words import CASE_STATUSES, REVIEW_STATES
from app.core.model_card import CaseRuleSpec
from app.web.cases.presenter import (
    REVIEW_LABELS,
    STATUS_LABELS,
    case_findings,
    case_headline,
    field_counts,
)

RULE = CaseRuleSpec(escalate_at=0.99)


def _field(class_id: str, p: float = 0.999, state: str = "answered") -> FieldOutcome:
    rest = (1 - p) / 3
    probs = {c: (p if c == class_id else rest) for c in ("benign", "early_pre_b", "pre_b", "pro_b")}
    return FieldOutcome(state, probs)  # type: ignore[arg-type]


def test_a_case_of_17_benign_and_3_pre_b_fields_is_headlined_as_blasts() -> None:
    v = case_verdict([_field("benign")] * 17 + [_field("pre_b")] * 3, RULE)
    assert case_headline(v) == "Blasts suspected in 3 of 20 fields: pattern most like Pre-B ALL"
    text = " ".join(case_findings(v))
    assert "3 fields of 20 (15%) show blasts" in text
    assert "fields 18, 19, 20" in text
    assert "flow cytometry" in text
    assert "Benign" not in case_headline(v)


def test_subtype_disagreement_is_said_with_counts() -> None:
    v = case_verdict([_field("pre_b")] * 14 + [_field("pro_b")] * 5, RULE)
    assert "disagree on the subtype: 14 Pre-B ALL, 5 Pro-B ALL" in " ".join(case_findings(v))


def test_a_majority_of_uncertain_fields_is_said_beside_the_counts() -> None:
    fields = [_field("benign")] * 4 + [_field("benign", 0.6, "uncertain")] * 6
    v = case_verdict(fields, RULE)
    findings = case_findings(v)
    assert "Most fields (6 of 10) were uncertain" in findings[-1]
    assert "agree" not in " ".join(findings)
    assert field_counts(v).startswith("Of 10 fields: 0 with blasts, 4 benign, 6 uncertain")


def test_uncertain_fields_leaning_malignant_are_named() -> None:
    fields = [_field("benign")] * 5 + [_field("early_pre_b", 0.6, "uncertain")]
    v = case_verdict(fields, RULE)
    assert v.status == "uncertain"
    assert case_headline(v) == "Uncertain: no case verdict"
    assert "field 6. Open them." in " ".join(case_findings(v))


def test_a_cell_models_case_says_how_many_leukocytes_look_blast_like() -> None:
    blasts = {"benign": 2, "early_pre_b": 0, "pre_b": 9, "pro_b": 1}
    normal = {"benign": 8, "early_pre_b": 0, "pre_b": 0, "pro_b": 0}
    fields = [
        FieldOutcome("answered", _field("pre_b").probabilities, cells=blasts),
        FieldOutcome("answered", _field("benign").probabilities, cells=normal),
    ]
    text = " ".join(case_findings(case_verdict(fields, RULE)))
    assert "10 of 20 leukocytes in the answered fields (50%) look blast-like" in text
    assert "9 Pre-B ALL, 1 Pro-B ALL" in text


def test_a_field_models_case_says_nothing_of_leukocyte_counts() -> None:
    v = case_verdict([_field("benign")] * 3, RULE)
    assert "leukocytes" not in " ".join(case_findings(v))


def test_the_search_forms_labels_name_every_status_and_review_state() -> None:
    assert list(STATUS_LABELS) == list(CASE_STATUSES)
    assert list(REVIEW_LABELS) == list(REVIEW_STATES)
