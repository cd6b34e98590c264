"""The case screening rule on hand-made fields: escalation, refusals, subtype counts."""

from __future__ import annotations

import pytest

from app.core.case_verdict import FieldOutcome, case_verdict
from app.core.model_card import CaseRuleSpec

RULE = CaseRuleSpec(min_used_share=1 / 3, escalate_at=0.99)


def _field(class_id: str, p: float = 0.995, state: str = "answered") -> FieldOutcome:
    rest = (1 - p) / 3
    probs = {c: (p if c == class_id else rest) for c in ("benign", "early_pre_b", "pre_b", "pro_b")}
    return FieldOutcome(state, probs)  # type: ignore[arg-type]


def test_one_confident_malignant_field_among_twenty_escalates_and_is_named() -> None:
    fields = [_field("benign")] * 19 + [_field("pre_b")]
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "malignant"
    assert verdict.class_id == "pre_b"
    assert verdict.malignant_fields == (20,)
    assert verdict.escalated
    assert verdict.malignant_share == pytest.approx(0.05)
    assert verdict.votes == {"benign": 19, "pre_b": 1}
    assert verdict.probabilities["benign"] > 0.9  # the mean leans benign; the screen does not
    assert not verdict.subtype_disagreement
    assert verdict.review_positions == (20,)


def test_agreeing_fields_give_the_class_and_excluded_fields_are_counted() -> None:
    fields = [_field("pre_b")] * 4 + [
        _field("benign", 0.6, "uncertain"),
        _field("benign", 0.99, "out_of_distribution"),
        FieldOutcome("refused"),
    ]
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "malignant"
    assert verdict.class_id == "pre_b"
    assert verdict.n_fields == 7
    assert verdict.n_used == 4
    assert verdict.excluded == {"uncertain": 1, "out_of_distribution": 1, "refused": 1}
    # The uncertain field leans benign, yet the verdict rests on it as uncertain.
    assert verdict.uncertain_fields == (5,)
    assert verdict.review_positions == (1, 2, 3, 4, 5)
    assert verdict.malignant_fields == (1, 2, 3, 4)
    assert verdict.votes == {"pre_b": 4}
    assert verdict.probabilities["pre_b"] == pytest.approx(0.995)


def test_uncertain_and_out_of_distribution_malignant_fields_do_not_escalate() -> None:
    fields = [_field("benign")] * 8 + [
        _field("pro_b", 0.7, "uncertain"),
        _field("pre_b", 0.999, "out_of_distribution"),
    ]
    verdict = case_verdict(fields, RULE)
    assert not verdict.escalated
    assert verdict.status == "uncertain"  # never benign either
    assert verdict.class_id == "pro_b"
    assert verdict.reason is not None
    assert "field 9" in verdict.reason
    assert verdict.uncertain_malignant_fields == (9,)
    assert verdict.review_positions == (9,)  # the reviewer must still look at it
    benign_leaning = [_field("benign")] * 8 + [_field("benign", 0.7, "uncertain")]
    assert case_verdict(benign_leaning, RULE).status == "benign"


def test_an_answered_malignant_field_below_the_threshold_makes_the_case_uncertain() -> None:
    fields = [_field("benign")] * 9 + [_field("early_pre_b", 0.95)]
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "uncertain"
    assert verdict.class_id == "early_pre_b"
    assert verdict.weak_malignant_fields == (10,)
    assert not verdict.malignant_fields
    assert verdict.reason is not None
    assert "field 10" in verdict.reason
    # With the unfitted default every answered malignant field escalates.
    assert case_verdict(fields, CaseRuleSpec()).status == "malignant"


def test_subtype_disagreement_is_reported_with_the_counts() -> None:
    fields = [_field("pre_b")] * 14 + [_field("pro_b")] * 5 + [_field("benign")]
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "malignant"
    assert verdict.class_id == "pre_b"
    assert verdict.subtype_disagreement
    assert verdict.subtype_votes == {"pre_b": 14, "pro_b": 5}


def test_a_subtype_tie_goes_to_the_higher_summed_probability() -> None:
    fields = [_field("pro_b", 0.992), _field("pre_b", 0.999)]
    assert case_verdict(fields, RULE).class_id == "pre_b"


def test_mostly_uncertain_fields_are_said_to_be_so() -> None:
    fields = [_field("benign")] * 4 + [_field("benign", 0.6, "uncertain")] * 6
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "benign"
    assert verdict.mostly_uncertain
    assert verdict.n_uncertain == 6


def test_too_few_usable_fields_make_the_case_uncertain() -> None:
    fields = [_field("benign")] + [FieldOutcome("refused")] * 3
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "uncertain"
    assert verdict.reason is not None
    assert "only 1 of 4 fields" in verdict.reason
    empty = case_verdict([], RULE)
    assert empty.status == "uncertain"
    assert empty.class_id is None
    assert empty.n_used == 0


def test_escalation_needs_no_majority_of_usable_fields() -> None:
    fields = [_field("pro_b")] + [FieldOutcome("refused")] * 9
    assert case_verdict(fields, RULE).status == "malignant"


def test_positions_given_by_the_case_are_kept() -> None:
    fields = [FieldOutcome("answered", _field("pre_b").probabilities, 7)]
    assert case_verdict(fields, RULE).malignant_fields == (7,)


def test_a_stored_rule_of_an_older_version_reads_with_safe_defaults() -> None:
    rule = CaseRuleSpec.from_record({"min_used_share": 0.5, "min_agreement": 0.7})
    assert rule.min_used_share == 0.5
    assert rule.escalate_at == 0.0


def test_a_cell_models_fields_sum_their_leukocytes_into_the_cases_differential() -> None:
    rule = CaseRuleSpec(escalate_at=0.5)
    blasts = {"benign": 1, "early_pre_b": 0, "pre_b": 6, "pro_b": 0}
    normal = {"benign": 4, "early_pre_b": 1, "pre_b": 0, "pro_b": 0}
    fields = [
        FieldOutcome(
            "answered",
            {"benign": 0.05, "early_pre_b": 0.05, "pre_b": 0.85, "pro_b": 0.05},
            cells=blasts,
        ),
        FieldOutcome(
            "answered",
            {"benign": 0.9, "early_pre_b": 0.05, "pre_b": 0.03, "pro_b": 0.02},
            cells=normal,
        ),
        FieldOutcome("refused"),
    ]
    verdict = case_verdict(fields, rule)
    assert verdict.status == "malignant"
    assert verdict.cell_counts == {"benign": 5, "early_pre_b": 1, "pre_b": 6, "pro_b": 0}
    assert (verdict.n_cells, verdict.blast_cells) == (12, 7)
    assert verdict.blast_share == 7 / 12


def test_a_whole_field_models_case_has_no_differential() -> None:
    verdict = case_verdict(
        [FieldOutcome("answered", {"benign": 1.0, "early_pre_b": 0.0, "pre_b": 0.0, "pro_b": 0.0})],
        CaseRuleSpec(),
    )
    assert verdict.cell_counts == {}
    assert verdict.n_cells == 0
    assert verdict.blast_share == 0.0


# 40% benign leads the four classes, yet blasts, any subtype, are 60%.
SPLIT_BLASTS = {"benign": 0.40, "early_pre_b": 0.15, "pre_b": 0.30, "pro_b": 0.15}


def test_a_field_leans_malignant_on_the_malignant_classes_summed_not_on_its_top_class() -> None:
    split = FieldOutcome("uncertain", SPLIT_BLASTS)
    assert split.leans_malignant
    assert split.lean == "pre_b"  # its likeliest malignant pattern
    assert split.malignant_probability == pytest.approx(0.60)
    tie = FieldOutcome("uncertain", {"benign": 0.5, "early_pre_b": 0.0, "pre_b": 0.5, "pro_b": 0.0})
    assert tie.leans_malignant  # a tie is not benign evidence
    assert tie.lean == "pre_b"
    clear = _field("benign", 0.6, "uncertain")
    assert not clear.leans_malignant
    assert clear.lean == "benign"
    assert _field("pro_b").lean == "pro_b"
    assert not FieldOutcome("refused").leans_malignant
    assert FieldOutcome("refused").lean is None
    partial = FieldOutcome("answered", {"pre_b": 0.9})  # an old row lacking classes
    assert (partial.lean, partial.probability("benign")) == ("pre_b", 0.0)


def test_an_uncertain_field_whose_blasts_outweigh_a_benign_leader_keeps_the_case_open() -> None:
    fields = [_field("benign")] * 8 + [FieldOutcome("uncertain", SPLIT_BLASTS)]
    verdict = case_verdict(fields, RULE)
    assert verdict.status == "uncertain"  # a four-way vote would have called it benign
    assert verdict.class_id == "pre_b"
    assert verdict.uncertain_malignant_fields == (9,)
    assert verdict.review_positions == (9,)
    assert verdict.reason is not None
    assert "field 9" in verdict.reason


def test_an_answered_field_whose_blasts_outweigh_a_benign_leader_is_malignant_evidence() -> None:
    # A model with no uncertain threshold answers every field it is shown.
    fields = [_field("benign")] * 8 + [FieldOutcome("answered", SPLIT_BLASTS)]
    weak = case_verdict(fields, RULE)
    assert weak.status == "uncertain"
    assert weak.weak_malignant_fields == (9,)
    assert weak.votes == {"benign": 8, "pre_b": 1}
    escalated = case_verdict(fields, CaseRuleSpec(escalate_at=0.5))
    assert escalated.status == "malignant"
    assert escalated.class_id == "pre_b"
    assert escalated.malignant_fields == (9,)
    assert escalated.subtype_votes == {"pre_b": 1}
