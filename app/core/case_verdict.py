"""The case verdict: one answer for the fields (photographs) of one patient's smear.

The rule, applied to the fields of one case:

1. Fields that were refused (unreadable, wrong scale), out of distribution or
   uncertain are left out and counted; they give no evidence either way.
2. The case's probabilities are the mean of the remaining fields' calibrated
   probabilities. The verdict is their most probable class.
3. The case is *uncertain* when no field remains, when fewer than
   ``CaseRuleSpec.min_used_share`` of the fields remain, or when the share of
   remaining fields whose own verdict is the case's (the *agreement*) is below
   ``CaseRuleSpec.min_agreement``, a threshold fitted on simulated validation
   cases (``python -m training fit-case``).

The mean, not the product, of the probabilities: fields of one smear are not
independent evidence, and a product would turn a few confident fields into a
certainty the data do not support.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from app.core.classes import CLASS_IDS, MALIGNANT
from app.core.model_card import CaseRuleSpec

FieldState = Literal["answered", "uncertain", "out_of_distribution", "refused"]
CaseStatus = Literal["malignant", "benign", "uncertain"]


@dataclass(frozen=True)
class FieldOutcome:
    """What the rule needs of one field: its state and, when it has them, its probabilities."""

    state: FieldState
    probabilities: Mapping[str, float] | None = None


@dataclass(frozen=True)
class CaseVerdict:
    """The case's answer and the evidence behind it.

    ``class_id`` is the leading class of the fields used, also when the case is
    uncertain (then it is only shown as what the evidence leans to); None when no
    field could be used.
    """

    status: CaseStatus
    class_id: str | None
    probabilities: dict[str, float]
    n_fields: int
    n_used: int
    excluded: dict[FieldState, int]
    # Fields used, by their own verdict.
    votes: dict[str, int] = field(default_factory=dict)
    agreement: float | None = None
    reason: str | None = None

    @property
    def uncertain(self) -> bool:
        return self.status == "uncertain"


def case_verdict(fields: Sequence[FieldOutcome], rule: CaseRuleSpec) -> CaseVerdict:
    """Aggregate the fields of one case by the rule in this module's docstring."""
    used = [f.probabilities for f in fields if f.state == "answered" and f.probabilities]
    excluded: dict[FieldState, int] = {
        state: sum(1 for f in fields if f.state == state)
        for state in ("uncertain", "out_of_distribution", "refused")
    }
    if not used:
        empty = "no field could be used" if fields else "the case has no fields yet"
        return CaseVerdict("uncertain", None, {}, len(fields), 0, excluded, reason=empty)
    probabilities = {c: sum(float(p[c]) for p in used) / len(used) for c in CLASS_IDS}
    class_id = max(probabilities, key=lambda c: probabilities[c])
    votes = Counter(max(p, key=lambda c: p[c]) for p in used)
    agreement = votes[class_id] / len(used)
    reason = _uncertain_reason(len(used), len(fields), agreement, rule)
    status: CaseStatus = (
        "uncertain" if reason else ("malignant" if MALIGNANT[class_id] else "benign")
    )
    return CaseVerdict(
        status=status,
        class_id=class_id,
        probabilities=probabilities,
        n_fields=len(fields),
        n_used=len(used),
        excluded=excluded,
        votes={c: votes[c] for c in CLASS_IDS if votes[c]},
        agreement=agreement,
        reason=reason,
    )


def _uncertain_reason(
    n_used: int, n_fields: int, agreement: float, rule: CaseRuleSpec
) -> str | None:
    if n_used < rule.min_used_share * n_fields:
        return (
            f"only {n_used} of {n_fields} fields could be used "
            f"(at least {rule.min_used_share:.0%} are needed)"
        )
    if agreement < rule.min_agreement:
        return (
            f"the fields disagree: {agreement:.0%} of those used agree with the leading class "
            f"(at least {rule.min_agreement:.0%} are needed)"
        )
    return None
