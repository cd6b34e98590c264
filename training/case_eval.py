"""Simulated cases: the case rule (``app.core.case_verdict``) fitted and measured.

The data set has no patient ids, so a case is simulated by drawing k fields of one
class, without replacement, from a split's images as the capture suite saw them
(``training.capture.Outcomes``). Each case goes through the served rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.core.case_verdict import FieldOutcome, FieldState, case_verdict
from app.core.classes import CLASS_IDS
from app.core.model_card import CaseRuleSpec, ModelCard
from app.core.model_files import model_files
from training.capture import SILENT_ERROR_TARGET, Outcomes
from training.markdown import table

CASE_SIZES = (1, 3, 5, 10, 20)
FIT_SIZES = (3, 5, 10, 20)
CASES_PER_CLASS = 200
AGREEMENT_GRID = tuple(np.round(np.arange(0.5, 1.0001, 0.05), 2))


@dataclass(frozen=True)
class CaseScore:
    """Outcome of simulated cases: accuracy over the cases answered, silent errors
    (wrong and not uncertain) and the uncertain share, both over all cases."""

    n_cases: int
    accuracy: float | None
    silent_errors: float
    uncertain: float


def field_outcomes(o: Outcomes, uncertain_below: float | None) -> list[FieldOutcome]:
    """Each image of a capture set as the case rule sees it."""
    fields = []
    for i in range(len(o.labels)):
        state: FieldState
        if o.refused[i]:
            state = "refused"
        elif o.ood[i]:
            state = "out_of_distribution"
        elif o.confidence[i] < (uncertain_below or 0.0):
            state = "uncertain"
        else:
            state = "answered"
        probs = (
            None
            if o.refused[i]
            else dict(zip(CLASS_IDS, map(float, o.probabilities[i]), strict=True))
        )
        fields.append(FieldOutcome(state, probs))
    return fields


def draw_cases(
    labels: np.ndarray, k: int, per_class: int = CASES_PER_CLASS, seed: int = 0
) -> list[tuple[int, np.ndarray]]:
    """(class index, field indices) of ``per_class`` cases of ``k`` fields per class."""
    rng = np.random.default_rng(seed + 1000 * k)
    cases = []
    for label in range(len(CLASS_IDS)):
        pool = np.flatnonzero(labels == label)
        if len(pool) < k:
            continue
        cases += [(label, rng.choice(pool, size=k, replace=False)) for _ in range(per_class)]
    return cases


def score_cases(
    fields: Sequence[FieldOutcome],
    cases: Iterable[tuple[int, np.ndarray]],
    rule: CaseRuleSpec,
) -> CaseScore:
    n = answered = right = 0
    for label, picks in cases:
        verdict = case_verdict([fields[i] for i in picks], rule)
        n += 1
        if not verdict.uncertain:
            answered += 1
            right += verdict.class_id == CLASS_IDS[label]
    if n == 0:
        return CaseScore(0, None, 0.0, 0.0)
    return CaseScore(
        n_cases=n,
        accuracy=right / answered if answered else None,
        silent_errors=(answered - right) / n,
        uncertain=(n - answered) / n,
    )


def fit_case_rule(
    sets: Sequence[tuple[Outcomes, float | None]], base: CaseRuleSpec | None = None
) -> CaseRuleSpec:
    """The lowest agreement threshold whose validation cases (every set, k in FIT_SIZES)
    are silently wrong at most SILENT_ERROR_TARGET of the time (1.0 when none is)."""
    base = base or CaseRuleSpec()
    pooled = []
    for outcomes, uncertain_below in sets:
        fields = field_outcomes(outcomes, uncertain_below)
        pooled += [(fields, draw_cases(outcomes.labels, k)) for k in FIT_SIZES]
    chosen = None
    for threshold in AGREEMENT_GRID:
        rule = replace(base, min_agreement=float(threshold))
        scores = [score_cases(fields, cases, rule) for fields, cases in pooled]
        total = sum(s.n_cases for s in scores)
        silent = sum(s.silent_errors * s.n_cases for s in scores) / total
        uncertain = sum(s.uncertain * s.n_cases for s in scores) / total
        chosen = replace(
            rule, val_cases=total, val_silent_error_rate=silent, val_uncertain_rate=uncertain
        )
        if silent <= SILENT_ERROR_TARGET:
            break
    assert chosen is not None
    return replace(
        chosen,
        method=(
            "lowest agreement threshold (grid 0.50-1.00) whose simulated validation cases "
            f"(k = {', '.join(map(str, FIT_SIZES))} fields of one class, {CASES_PER_CLASS} "
            f"per class and k, every capture set) are silently wrong at most "
            f"{SILENT_ERROR_TARGET:.1%} of the time"
        ),
    )


def save_case_rule(models_dir: Path, name: str, rule: CaseRuleSpec) -> ModelCard:
    path = model_files(models_dir, name).card
    card = ModelCard.load(path)
    card.case_rule = rule
    card.save(path)
    return card


def case_markdown(
    results: dict[str, dict[str, dict[int, CaseScore]]], display: dict[str, str], split: str
) -> str:
    """Per model: simulated cases of each size on the unperturbed split and the capture sets."""
    rows = []
    for name, sets in results.items():
        for capture, by_k in sets.items():
            for k, s in by_k.items():
                silent = f"{100 * s.silent_errors:.1f}%"
                if s.silent_errors > SILENT_ERROR_TARGET:
                    silent += " ✗"
                accuracy = "n/a" if s.accuracy is None else f"{100 * s.accuracy:.1f}%"
                rows.append(
                    [
                        display[name],
                        capture,
                        str(k),
                        str(s.n_cases),
                        accuracy,
                        silent,
                        f"{100 * s.uncertain:.1f}%",
                    ]
                )
    return "\n".join(
        [
            "## Cases: the case verdict on simulated cases",
            "",
            f"The data set has no patient ids, so a case is k {split} images of one class drawn "
            f"without replacement, {CASES_PER_CLASS} cases per class and k "
            "(`training/case_eval.py`), each judged by the served case rule "
            "(`app.core.case_verdict`; its agreement threshold fitted on validation cases: "
            "`python -m training fit-case`). *Accuracy* is over the cases answered; *silent "
            "errors* (a wrong class, not called uncertain) and *uncertain* are shares of all "
            "cases. ✗: silent errors over 0.5%.",
            "",
            table(["model", "set", "k", "cases", "accuracy", "silent errors", "uncertain"], rows),
            "",
        ]
    )


def case_results(
    outcomes: dict[str, dict[str, Outcomes]],
    thresholds: dict[str, float | None],
    rules: dict[str, CaseRuleSpec],
    capture_sizes: Sequence[int] = (5, 20),
) -> dict[str, dict[str, dict[int, CaseScore]]]:
    """Scores of every model's simulated cases: every size on the unperturbed set,
    ``capture_sizes`` on each capture set."""
    results: dict[str, dict[str, dict[int, CaseScore]]] = {}
    for name, sets in outcomes.items():
        results[name] = {}
        for capture, o in sets.items():
            fields = field_outcomes(o, thresholds[name])
            sizes = CASE_SIZES if capture == "unperturbed" else capture_sizes
            results[name][capture] = {
                k: score_cases(fields, draw_cases(o.labels, k), rules[name]) for k in sizes
            }
    return results
