"""Simulated cases: the screening case rule (``app.core.case_verdict``) fitted and measured.

The data set has no patient ids. A patient's photographs are believed to be numbered
together (``training.patient_proxy``), so a simulated case is built from runs of
neighbouring files: its benign part is a run of consecutive benign files, its malignant
part a run of consecutive files of one malignant subtype (one patient has one subtype).
"Consecutive" is in file-number order among the split's images of that class. Each case
has n fields of which m are malignant; its fields are the split's images as the capture
suite saw them (``training.capture.Outcomes``), judged by the served rule.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.core.case_verdict import FieldOutcome, FieldState, case_verdict
from app.core.classes import CLASS_IDS, MALIGNANT
from app.core.model_card import CaseRuleSpec, ModelCard
from app.core.model_files import model_files
from training.capture import Outcomes
from training.markdown import table
from training.metrics import wilson

log = logging.getLogger(__name__)

CASE_SIZES = (5, 10, 20)
MALIGNANT_COUNTS = (0, 1, 2, 3, 5)
CASES_PER_COMPOSITION = 200
FIT_SIZE = 20
FALSE_ESCALATION_TARGET = 0.05
ESCALATE_GRID = (
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.998,
    0.999,
    0.9995,
    0.9999,
    0.99999,
)
BENIGN_LABEL = next(i for i, c in enumerate(CLASS_IDS) if not MALIGNANT[c])
MALIGNANT_LABELS = tuple(i for i, c in enumerate(CLASS_IDS) if MALIGNANT[c])
Composition = tuple[int, int]
CASE_HEADING = "## Cases:"


@dataclass(frozen=True)
class CaseDraw:
    """One simulated case: indices into the split of its benign run, then its malignant run."""

    n: int
    m: int
    subtype: int | None
    fields: tuple[int, ...]

    @property
    def malignant_part(self) -> tuple[int, ...]:
        return self.fields[self.n - self.m :]


@dataclass(frozen=True)
class CaseTally:
    """How a group of simulated cases came out. ``confident`` counts cases with at least
    one malignant field answered as malignant; ``confident_benign`` those called benign."""

    n_cases: int = 0
    malignant: int = 0
    benign: int = 0
    uncertain: int = 0
    confident: int = 0
    confident_benign: int = 0

    def __add__(self, other: CaseTally) -> CaseTally:
        return CaseTally(
            *(a + b for a, b in zip(_counts(self), _counts(other), strict=True)),
        )


def _counts(t: CaseTally) -> tuple[int, ...]:
    return (t.n_cases, t.malignant, t.benign, t.uncertain, t.confident, t.confident_benign)


def total(tallies: Iterable[CaseTally]) -> CaseTally:
    return sum(tallies, CaseTally())


def compositions(sizes: Sequence[int] = CASE_SIZES) -> list[Composition]:
    """(n, m) of every case kind: m in MALIGNANT_COUNTS and n/2, never above n."""
    out = []
    for n in sizes:
        counts = sorted({m for m in (*MALIGNANT_COUNTS, n // 2) if m <= n})
        out += [(n, m) for m in counts]
    return out


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


def runs_by_class(labels: np.ndarray, numbers: np.ndarray) -> dict[int, np.ndarray]:
    """Per class, the indices of its images in file-number order."""
    out = {}
    for label in range(len(CLASS_IDS)):
        members = np.flatnonzero(labels == label)
        out[label] = members[np.argsort(numbers[members], kind="stable")]
    return out


def _windows(order: np.ndarray, length: int) -> int:
    return max(0, len(order) - length + 1) if length else 1


def draw_cases(
    labels: np.ndarray,
    numbers: np.ndarray,
    n: int,
    m: int,
    per_composition: int = CASES_PER_COMPOSITION,
    seed: int = 0,
) -> list[CaseDraw]:
    """Cases of ``n`` fields, ``m`` malignant: a run of n - m consecutive benign files and a
    run of m consecutive files of one subtype, at seeded starting points; every distinct
    case when there are at most ``per_composition`` of them."""
    runs = runs_by_class(labels, numbers)
    benign = runs[BENIGN_LABEL]
    n_benign = _windows(benign, n - m)
    # Each malignant window is (subtype, start); an all-benign case has one empty window.
    malignant = (
        [(s, start) for s in MALIGNANT_LABELS for start in range(_windows(runs[s], m))]
        if m
        else [(None, 0)]
    )
    possible = n_benign * len(malignant)
    rng = np.random.default_rng([seed, n, m])
    if possible <= per_composition:
        picks = np.arange(possible)
    else:
        picks = np.sort(rng.choice(possible, size=per_composition, replace=False))
    cases = []
    for pick in picks.tolist():
        b_start, window = divmod(pick, len(malignant))
        subtype, m_start = malignant[window]
        part = benign[b_start : b_start + n - m].tolist()
        if subtype is not None:
            part += runs[subtype][m_start : m_start + m].tolist()
        cases.append(CaseDraw(n, m, subtype, tuple(part)))
    return cases


def draw_all(
    labels: np.ndarray,
    numbers: np.ndarray,
    kinds: Sequence[Composition],
    per_composition: int = CASES_PER_COMPOSITION,
    seed: int = 0,
) -> dict[Composition, list[CaseDraw]]:
    return {(n, m): draw_cases(labels, numbers, n, m, per_composition, seed) for n, m in kinds}


def _answered_malignant(f: FieldOutcome) -> bool:
    return f.state == "answered" and f.leans_malignant


def tally(
    fields: Sequence[FieldOutcome], draws: Iterable[CaseDraw], rule: CaseRuleSpec
) -> CaseTally:
    """The verdicts of ``draws`` on one capture set's fields, counted."""
    counts = dict.fromkeys(("n", "malignant", "benign", "uncertain", "conf", "conf_benign"), 0)
    for draw in draws:
        verdict = case_verdict([fields[i] for i in draw.fields], rule)
        confident = any(_answered_malignant(fields[i]) for i in draw.malignant_part)
        counts["n"] += 1
        counts[verdict.status] += 1
        counts["conf"] += confident
        counts["conf_benign"] += confident and verdict.status == "benign"
    return CaseTally(*counts.values())


def tally_sets(
    fields_by_set: Mapping[str, Sequence[FieldOutcome]],
    draws: Mapping[Composition, Sequence[CaseDraw]],
    rule: CaseRuleSpec,
) -> dict[str, dict[Composition, CaseTally]]:
    """set -> (n, m) -> tally; every set is judged on the same draws (paired)."""
    return {
        name: {kind: tally(fields, cases, rule) for kind, cases in draws.items()}
        for name, fields in fields_by_set.items()
    }


def false_escalation(by_kind: Mapping[Composition, CaseTally], n: int = FIT_SIZE) -> CaseTally:
    return by_kind.get((n, 0), CaseTally())


def with_malignant(by_kind: Mapping[Composition, CaseTally]) -> CaseTally:
    return total(t for (_, m), t in by_kind.items() if m > 0)


def grid_for(uncertain_below: float | None) -> list[float]:
    values = set(ESCALATE_GRID) | ({uncertain_below} if uncertain_below else set())
    return sorted(values)


def fit_case_rule(
    sets: Mapping[str, Outcomes],
    numbers: np.ndarray,
    uncertain_below: float | None,
    base: CaseRuleSpec | None = None,
    per_composition: int = CASES_PER_COMPOSITION,
) -> CaseRuleSpec:
    """The lowest escalate_at on the grid whose all-benign FIT_SIZE-field validation cases,
    pooled over ``sets``, are escalated at most FALSE_ESCALATION_TARGET of the time (the
    highest grid value when none is); its miss and uncertain rates over every case kind."""
    base = base or CaseRuleSpec()
    labels = next(iter(sets.values())).labels
    fields = {name: field_outcomes(o, uncertain_below) for name, o in sets.items()}
    benign_cases = {(FIT_SIZE, 0): draw_cases(labels, numbers, FIT_SIZE, 0, per_composition)}
    grid = grid_for(uncertain_below)
    chosen, met = grid[-1], False
    for value in grid:
        rule = replace(base, escalate_at=value)
        pooled = total(false_escalation(t) for t in tally_sets(fields, benign_cases, rule).values())
        log.info("escalate_at %g: %d of %d escalated", value, pooled.malignant, pooled.n_cases)
        if pooled.n_cases and pooled.malignant <= FALSE_ESCALATION_TARGET * pooled.n_cases:
            chosen, met = value, True
            break
    rule = replace(base, escalate_at=chosen)
    results = tally_sets(fields, draw_all(labels, numbers, compositions(), per_composition), rule)
    escalated = total(false_escalation(t) for t in results.values())
    malignant = total(with_malignant(t) for t in results.values())
    everything = total(t for by_kind in results.values() for t in by_kind.values())
    return replace(
        rule,
        val_cases=everything.n_cases,
        val_false_escalation_rate=_rate(escalated.malignant, escalated.n_cases),
        val_miss_rate=_rate(malignant.benign, malignant.n_cases),
        val_uncertain_rate=_rate(everything.uncertain, everything.n_cases),
        method=_method(len(grid), escalated.n_cases, len(sets), met, per_composition),
    )


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _method(grid: int, n_fit: int, n_sets: int, met: bool, per_composition: int) -> str:
    outcome = "" if met else "; no value met the target, so the highest was taken"
    return (
        f"lowest escalate_at on a {grid}-value grid (0.5-0.99999 and the card's "
        f"uncertain_below) whose {n_fit} simulated all-benign {FIT_SIZE}-field validation "
        f"cases (runs of consecutive benign files, pooled over {n_sets} capture set(s)) are "
        f"escalated at most {FALSE_ESCALATION_TARGET:.0%} of the time{outcome}. The val "
        "rates are over every case kind (n = 5, 10, 20 fields, m = 0, 1, 2, 3, 5, n/2 "
        f"malignant; runs of one subtype; at most {per_composition} cases per kind and set): "
        "false escalation of the all-benign 20-field cases, misses of cases with a "
        "malignant field, uncertain of all cases"
    )


def _fitted_sets(method: str) -> str:
    """How many capture sets a rule was fitted on, as its method records it."""
    found = re.search(r"pooled over (\d+) capture set", method)
    return found.group(1) if found else "?"


def save_case_rule(models_dir: Path, name: str, rule: CaseRuleSpec) -> ModelCard:
    return ModelCard.update(model_files(models_dir, name).card, case_rule=rule)


def case_results(
    outcomes: Mapping[str, Mapping[str, Outcomes]],
    numbers: np.ndarray,
    thresholds: Mapping[str, float | None],
    rules: Mapping[str, CaseRuleSpec],
    per_composition: int = CASES_PER_COMPOSITION,
) -> dict[str, dict[str, dict[Composition, CaseTally]]]:
    """model -> set -> (n, m) -> tally of every model's simulated cases on every set."""
    results = {}
    for name, sets in outcomes.items():
        labels = next(iter(sets.values())).labels
        draws = draw_all(labels, numbers, compositions(), per_composition)
        fields = {capture: field_outcomes(o, thresholds[name]) for capture, o in sets.items()}
        results[name] = tally_sets(fields, draws, rules[name])
    return results


def _share(k: int, n: int) -> str:
    if n == 0:
        return "n/a"
    low, high = wilson(k, n)
    return f"{100 * k / n:.1f}% ({100 * low:.1f}-{100 * high:.1f})"


def _false_escalation_cell(t: CaseTally) -> str:
    cell = _share(t.malignant, t.n_cases)
    if t.n_cases and t.malignant > FALSE_ESCALATION_TARGET * t.n_cases:
        cell += " ✗"
    return cell


def _confident_miss_cell(t: CaseTally) -> str:
    cell = _share(t.confident_benign, t.confident)
    return cell + " ✗" if t.confident_benign else cell


def headline_rows(
    results: Mapping[str, Mapping[str, Mapping[Composition, CaseTally]]],
    display: Mapping[str, str],
) -> list[list[str]]:
    """Per model and set: misses, confident misses, false escalation, uncertain."""
    rows = []
    for name, sets in results.items():
        pooled: dict[str, Mapping[Composition, CaseTally]] = dict(sets)
        if len(sets) > 1:
            pooled["all sets pooled"] = _pool(sets.values())
        for capture, by_kind in pooled.items():
            malignant = with_malignant(by_kind)
            everything = total(by_kind.values())
            rows.append(
                [
                    display[name],
                    capture,
                    str(everything.n_cases),
                    _share(malignant.benign, malignant.n_cases),
                    f"{_confident_miss_cell(malignant)} of {malignant.confident}",
                    _false_escalation_cell(false_escalation(by_kind)),
                    _share(everything.uncertain, everything.n_cases),
                ]
            )
    return rows


def _pool(sets: Iterable[Mapping[Composition, CaseTally]]) -> dict[Composition, CaseTally]:
    pooled: dict[Composition, CaseTally] = {}
    for by_kind in sets:
        for kind, t in by_kind.items():
            pooled[kind] = pooled.get(kind, CaseTally()) + t
    return pooled


def composition_rows(
    results: Mapping[str, Mapping[str, Mapping[Composition, CaseTally]]],
    display: Mapping[str, str],
    capture: str = "unperturbed",
) -> list[list[str]]:
    """Per model and case kind on one set: how its cases were called."""
    rows = []
    for name, sets in results.items():
        for (n, m), t in sets.get(capture, {}).items():
            if not t.n_cases:
                continue
            miss = "-" if m == 0 else _share(t.benign, t.n_cases)
            escalation = "-" if m else _share(t.malignant, t.n_cases)
            if m == 0 and n == FIT_SIZE:
                escalation = _false_escalation_cell(t)
            rows.append(
                [
                    display[name],
                    str(n),
                    str(m),
                    str(t.n_cases),
                    str(t.malignant),
                    str(t.benign),
                    str(t.uncertain),
                    miss,
                    escalation,
                    _share(t.uncertain, t.n_cases),
                ]
            )
    return rows


def case_markdown(
    results: Mapping[str, Mapping[str, Mapping[Composition, CaseTally]]],
    display: Mapping[str, str],
    rules: Mapping[str, CaseRuleSpec],
    split: str,
    sets_note: str,
    command: str,
) -> str:
    """The report's case section: the fitted thresholds, every set, every case kind."""
    fitted = [
        [
            display[name],
            f"{rule.escalate_at:g}",
            str(rule.val_cases),
            _pct_or_na(rule.val_false_escalation_rate),
            _pct_or_na(rule.val_miss_rate),
            _pct_or_na(rule.val_uncertain_rate),
            _fitted_sets(rule.method),
        ]
        for name, rule in rules.items()
        if name in results
    ]
    return "\n".join(
        [
            f"{CASE_HEADING} the screening rule on simulated cases",
            "",
            f"Generated by `{command}`. The data set has no patient ids; neighbouring file "
            "numbers stand in for one patient (`training/patient_proxy.py`). A simulated "
            f"case of n fields (n = {', '.join(map(str, CASE_SIZES))}) with m malignant "
            f"(m = {', '.join(map(str, MALIGNANT_COUNTS))} and n/2, m at most n) is a run "
            "of n - m consecutive benign files and a run of m consecutive files of one "
            "malignant subtype, consecutive in file-number order among the "
            f"{split} split's images of that class (`training/case_eval.py`); starting "
            f"points are seeded, at most {CASES_PER_COMPOSITION} cases per kind (every "
            "distinct case when there are fewer), and the same cases are used on every "
            f"capture set. {sets_note} Each field is the image as the served path saw it "
            "(scale refusal, out-of-distribution guard, the card's `uncertain_below`), "
            "and each case is judged by the served screening rule (`app.core.case_verdict`).",
            "",
            "*Miss*: a case with at least one malignant field called benign, as a share of "
            "such cases. *Confident miss*: the same among cases with at least one malignant "
            "field answered as malignant (not uncertain, flagged or refused); the rule "
            "makes such a case malignant or uncertain, never benign, so this is 0 by "
            "construction (target: 0). *False escalation*: all-benign 20-field cases called "
            f"malignant (target: at most {FALSE_ESCALATION_TARGET:.0%}). *Uncertain*: "
            "cases called uncertain, as a share of all cases. Brackets: 95% Wilson "
            "intervals. Sliding windows overlap and every set reuses the same photographs, "
            "so the cases are not independent and the intervals are too narrow; read "
            "them as a lower bound on the uncertainty. ✗ marks a target missed.",
            "",
            "### The fitted thresholds (validation split)",
            "",
            "`python -m training fit-case --data-dir DIR` chooses `escalate_at`, the lowest "
            "value on a grid (0.5-0.99999 and the card's `uncertain_below`) whose "
            "all-benign 20-field validation cases, pooled over the capture sets it was "
            "fitted on (*sets*; `--captures`), are "
            f"escalated at most {FALSE_ESCALATION_TARGET:.0%} of the time; nothing is "
            f"chosen on the {split} split.",
            "",
            table(
                [
                    "model",
                    "escalate_at",
                    "val cases",
                    "val false escalation",
                    "val miss",
                    "val uncertain",
                    "sets",
                ],
                fitted,
            ),
            "",
            f"### Per model and set ({split} split)",
            "",
            table(
                [
                    "model",
                    "set",
                    "cases",
                    "miss",
                    "confident miss",
                    "false escalation (20 fields)",
                    "uncertain",
                ],
                headline_rows(results, display),
            ),
            "",
            f"### Per case kind, unperturbed {split} images",
            "",
            "Cases called malignant, benign and uncertain. For m = 0 the false-escalation "
            "column is the share called malignant (the target applies to n = 20).",
            "",
            table(
                [
                    "model",
                    "n",
                    "m",
                    "cases",
                    "malignant",
                    "benign",
                    "uncertain",
                    "miss",
                    "false escalation",
                    "uncertain share",
                ],
                composition_rows(results, display),
            ),
            "",
        ]
    )


def _pct_or_na(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
