"""Simulated cases: contiguous draws, their accounting, the Wilson interval and the fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.case_verdict import FieldOutcome
from app.core.classes import CLASS_IDS
from app.core.model_card import CaseRuleSpec
from training.capture import Outcomes
from training.case_eval import (
    CaseDraw,
    CaseTally,
    compositions,
    draw_cases,
    field_outcomes,
    fit_case_rule,
    headline_rows,
    tally,
    tally_sets,
)
from training.data import Sample
from training.file_numbers import file_number
from training.metrics import wilson

BENIGN, EARLY, PRE, PRO = range(4)
FOLDERS = ("Benign", "Early", "Pre", "Pro")


def _samples(per_class: int, seed: int = 3) -> list[Sample]:
    """Files of every class with gaps in their numbers, listed out of number order."""
    rng = np.random.default_rng(seed)
    out = []
    for label, folder in enumerate(FOLDERS):
        numbers = np.sort(rng.choice(np.arange(1, 4 * per_class), per_class, replace=False))
        for n in rng.permutation(numbers):
            path = Path(f"/data/{folder}/WBC-{folder}-{n:03d}.jpg")
            out.append(Sample(path=path, class_id=CLASS_IDS[label], sha256=f"{label}-{n}"))
    return out


def _arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([s.label for s in samples]), np.array([file_number(s) for s in samples])


def _outcomes(
    labels: list[int] | np.ndarray,
    predicted: list[int] | np.ndarray,
    confidence: float | list[float] | np.ndarray = 0.99,
) -> Outcomes:
    n = len(labels)
    top = np.broadcast_to(np.asarray(confidence, dtype=float), (n,))
    probs = np.repeat(((1 - top) / 3)[:, None], 4, axis=1)
    probs[np.arange(n), predicted] = top
    return Outcomes(
        labels=np.array(labels),
        refused=np.zeros(n, bool),
        ood=np.zeros(n, bool),
        predicted=np.array(predicted),
        confidence=top.copy(),
        probabilities=probs,
    )


def _field(class_id: str, p: float = 0.999, state: str = "answered") -> FieldOutcome:
    probs = {c: (p if c == class_id else (1 - p) / 3) for c in CLASS_IDS}
    return FieldOutcome(state, probs)  # type: ignore[arg-type]


def _rank(order: list[int], numbers: np.ndarray, labels: np.ndarray, label: int) -> list[int]:
    """Positions of ``order`` among the class's files sorted by number."""
    ranked = sorted(numbers[labels == label].tolist())
    return [ranked.index(int(numbers[i])) for i in order]


def test_a_case_is_a_benign_run_and_a_run_of_one_subtype_in_file_number_order() -> None:
    labels, numbers = _arrays(_samples(30))
    cases = draw_cases(labels, numbers, n=10, m=3, per_composition=50, seed=1)
    assert len(cases) == 50
    assert len(set(cases)) == 50
    for case in cases:
        benign, malignant = list(case.fields[:7]), list(case.malignant_part)
        assert (labels[benign] == BENIGN).all()
        assert case.subtype in (EARLY, PRE, PRO)
        assert (labels[malignant] == case.subtype).all()
        ranks = _rank(benign, numbers, labels, BENIGN)
        assert ranks == list(range(ranks[0], ranks[0] + 7))
        ranks = _rank(malignant, numbers, labels, case.subtype)
        assert ranks == list(range(ranks[0], ranks[0] + 3))
    assert {c.subtype for c in cases} == {EARLY, PRE, PRO}
    assert len({c.fields[0] for c in cases}) > 5  # the starting points slide
    assert draw_cases(labels, numbers, 10, 3, 50, seed=1) == cases
    assert draw_cases(labels, numbers, 10, 3, 50, seed=2) != cases


def test_every_distinct_case_is_taken_when_there_are_few() -> None:
    labels, numbers = _arrays(_samples(12))
    benign = draw_cases(labels, numbers, n=10, m=0, per_composition=200)
    assert len(benign) == 3  # 12 files hold 3 runs of 10
    assert len(set(benign)) == 3
    assert all(c.subtype is None and c.malignant_part == () for c in benign)
    all_malignant = draw_cases(labels, numbers, n=12, m=12, per_composition=200)
    assert len(all_malignant) == 3
    assert {c.subtype for c in all_malignant} == {EARLY, PRE, PRO}
    assert draw_cases(labels, numbers, n=13, m=0) == []  # no run of 13 benign files


def test_compositions_take_m_of_0_1_2_3_5_and_half_of_n_never_above_n() -> None:
    assert compositions((4, 10, 20)) == [
        (4, 0),
        (4, 1),
        (4, 2),
        (4, 3),
        (10, 0),
        (10, 1),
        (10, 2),
        (10, 3),
        (10, 5),
        (20, 0),
        (20, 1),
        (20, 2),
        (20, 3),
        (20, 5),
        (20, 10),
    ]
    labels, numbers = _arrays(_samples(30))
    for n, m in compositions((5, 20)):
        for case in draw_cases(labels, numbers, n, m, per_composition=20):
            assert (case.n, case.m, len(case.fields)) == (n, m, n)
            assert (labels[list(case.fields)] != BENIGN).sum() == m


def test_field_states_follow_refusal_guard_and_uncertain_threshold() -> None:
    o = _outcomes([0, 1, 2, 3], [0, 1, 2, 3], [0.99, 0.99, 0.5, 0.99])
    o.refused[0], o.ood[1] = True, True
    states = [f.state for f in field_outcomes(o, uncertain_below=0.9)]
    assert states == ["refused", "out_of_distribution", "uncertain", "answered"]
    assert [f.state for f in field_outcomes(o, None)][2] == "answered"


def test_misses_false_escalations_and_uncertain_cases_are_counted() -> None:
    fields = [
        _field("benign"),  # 0
        _field("benign"),  # 1
        _field("pre_b", 0.999),  # 2: a confident malignant field
        _field("pre_b", 0.6, "uncertain"),  # 3: a malignant field the model was unsure of
        _field("pro_b", 0.995),  # 4: a benign field answered malignant
        _field("pro_b", 0.95),  # 5: a malignant field answered below escalate_at
        _field("benign", 0.99),  # 6: a malignant field answered benign
    ]
    draws = [
        CaseDraw(3, 1, PRE, (0, 1, 2)),  # malignant
        CaseDraw(3, 1, PRE, (0, 1, 3)),  # uncertain: an unsure field leans malignant
        CaseDraw(3, 1, PRO, (0, 1, 5)),  # uncertain (weak), confident
        CaseDraw(3, 1, PRO, (0, 1, 6)),  # benign: a miss
        CaseDraw(2, 0, None, (0, 1)),  # benign
        CaseDraw(2, 0, None, (0, 4)),  # false escalation at 0.99
    ]
    at_99 = tally(fields, draws, CaseRuleSpec(escalate_at=0.99))
    assert at_99 == CaseTally(
        n_cases=6, malignant=2, benign=2, uncertain=2, confident=2, confident_benign=0
    )
    at_999 = tally(fields, draws, CaseRuleSpec(escalate_at=0.999))
    assert (at_999.malignant, at_999.benign, at_999.uncertain) == (1, 2, 3)
    # A weak malignant field beside a benign-called one: uncertain, never a confident miss.
    mixed = tally(fields, [CaseDraw(2, 2, PRO, (5, 6))], CaseRuleSpec(escalate_at=0.99))
    assert (mixed.confident, mixed.uncertain, mixed.confident_benign) == (1, 1, 0)


def test_the_report_rows_give_rates_with_intervals_and_mark_a_missed_target() -> None:
    by_kind = {
        (20, 0): CaseTally(n_cases=40, malignant=4, benign=36),
        (20, 1): CaseTally(n_cases=10, malignant=6, benign=2, uncertain=2, confident=7),
    }
    [row] = headline_rows({"m": {"unperturbed": by_kind}}, {"m": "M"})
    assert row[:3] == ["M", "unperturbed", "50"]
    assert row[3] == "20.0% (5.7-51.0)"  # 2 of 10 missed
    assert row[4] == "0.0% (0.0-35.4) of 7"
    assert row[5] == "10.0% (4.0-23.1) ✗"  # over the 5% target
    assert row[6] == "4.0% (1.1-13.5)"


def test_wilson_interval() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    low, high = wilson(3, 40)
    assert (low, high) == pytest.approx((1 - wilson(37, 40)[1], 1 - wilson(37, 40)[0]))
    assert low < 3 / 40 < high
    assert wilson(0, 0) == (0.0, 1.0)


def _validation(benign_false: dict[int, float]) -> tuple[dict[str, Outcomes], np.ndarray]:
    """60 benign and 30 files of each subtype, all confidently right except the benign
    files at the given ranks (in number order), answered pre_b with the given probability."""
    labels = np.array([BENIGN] * 60 + [EARLY] * 30 + [PRE] * 30 + [PRO] * 30)
    numbers = np.concatenate([np.arange(60)[::-1] * 2 + 1, np.arange(90)])
    o = _outcomes(labels, labels, 0.9999)
    for rank, p in benign_false.items():
        index = int(np.flatnonzero(numbers[:60] == 2 * rank + 1)[0])
        o.predicted[index], o.confidence[index] = PRE, p
        o.probabilities[index] = (1 - p, 0.0, p, 0.0)  # malignant probability p
    return {"unperturbed": o}, numbers


def test_the_fit_takes_the_lowest_threshold_meeting_the_false_escalation_target() -> None:
    # 41 runs of 20 benign files: each holds a 0.96 field; 6 of them a 0.985 field (15%).
    sets, numbers = _validation({5: 0.985, 10: 0.96, 30: 0.96, 50: 0.96})
    rule = fit_case_rule(sets, numbers, uncertain_below=0.9)
    assert rule.escalate_at == 0.99
    assert rule.val_false_escalation_rate == 0.0
    assert rule.val_miss_rate == 0.0
    assert rule.val_cases > 0
    assert rule.val_uncertain_rate is not None
    assert "lowest escalate_at" in rule.method
    assert "no value met" not in rule.method
    # The grid's value below it misses the target.
    labels = sets["unperturbed"].labels
    fields = {"unperturbed": field_outcomes(sets["unperturbed"], 0.9)}
    benign = {(20, 0): draw_cases(labels, numbers, 20, 0)}
    below = tally_sets(fields, benign, CaseRuleSpec(escalate_at=0.98))["unperturbed"][(20, 0)]
    assert below.n_cases == 41
    assert below.malignant == 6


def test_uncertain_fields_cannot_push_the_fitted_threshold_up() -> None:
    sets, numbers = _validation({10: 0.9, 30: 0.9, 50: 0.9, 12: 0.93})
    # With 0.93 answered, 13 of 41 runs hold it: 0.95 is the lowest value that passes.
    assert fit_case_rule(sets, numbers, uncertain_below=0.92).escalate_at == 0.95
    # Every false field uncertain: nothing escalates, so the grid's lowest value passes.
    assert fit_case_rule(sets, numbers, uncertain_below=0.935).escalate_at == 0.5


def test_the_fit_says_so_when_no_threshold_meets_the_target() -> None:
    sets, numbers = _validation({r: 0.999999 for r in range(0, 60, 5)})
    rule = fit_case_rule(sets, numbers, uncertain_below=0.9)
    assert rule.escalate_at == 0.99999
    assert "no value met the target" in rule.method
    assert rule.val_false_escalation_rate == 1.0


def test_the_case_section_is_replaced_in_place() -> None:
    from training.report import replace_section

    report = "# R\n\n## Real captures\n\nA\n\n## Cases: old\n\nold rows\n\n## Physical scale\n\nB\n"
    new = replace_section(report, "## Cases:", "## Cases: new\n\nnew rows\n")
    assert (
        new
        == "# R\n\n## Real captures\n\nA\n\n## Cases: new\n\nnew rows\n\n## Physical scale\n\nB\n"
    )
    assert replace_section("# R\n", "## Cases:", "## Cases: x") == "# R\n\n## Cases: x\n"
