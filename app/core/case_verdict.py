"""The case verdict: a screening rule over the fields (photographs) of one patient's smear.

A screen must escalate on confident malignant evidence, never vote it away. The rule:

1. Fields that were refused (unreadable, wrong scale), out of distribution or
   uncertain give no verdict of their own; they are counted and listed.
2. **Escalation.** An answered field whose malignant probability (the sum of the three
   malignant classes) is at least ``CaseRuleSpec.escalate_at`` shows blasts. One such
   field makes the case *malignant*, whatever the other fields say. The threshold is
   fitted on simulated validation cases (``python -m training fit-case``) so that
   all-benign cases are rarely escalated.
3. **No silent benign.** An answered malignant field below that threshold, or an uncertain
   field that leans malignant, makes the case *uncertain*: it is evidence, too weak to
   escalate on, and must be looked at.
4. Otherwise the case is *benign* when at least ``CaseRuleSpec.min_used_share`` of its
   fields were answered (all of them benign), and *uncertain* when fewer were.

A field *leans malignant* when its three malignant classes together hold at least its benign
probability, whichever single class leads: a field at 40% benign and 20% for each subtype is
60% blasts, and a four-way vote would have split them three ways and called it benign.

A cell model's fields also carry their leukocytes' counts by class; the verdict sums them
over the answered fields (``cell_counts``), so it can say how many leukocytes, and what
share, look blast-like. Escalation stays on the field's pooled probability, which the cells
already decide; the counts are the differential a reviewer checks, not a second vote.

The subtype of an escalated case is a morphological pattern: the subtype most of its
escalating fields show (ties go to the higher summed probability). When those fields
show more than one subtype, the verdict says so with the counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from app.core.case_words import CaseStatus
from app.core.classes import CLASS_IDS, MALIGNANT, leans_malignant, malignant_probability
from app.core.model_card import CaseRuleSpec

BENIGN = "benign"
FieldState = Literal["answered", "uncertain", "out_of_distribution", "refused"]


@dataclass(frozen=True)
class FieldOutcome:
    """What the rule needs of one field: its state, its probabilities when it has them,
    and its position in the case (1-based) so the verdict can name it."""

    state: FieldState
    probabilities: Mapping[str, float] | None = None
    position: int | None = None
    # A cell model's leukocytes by class (reviewed classes where a reviewer changed them).
    cells: Mapping[str, int] | None = None

    def probability(self, class_id: str) -> float:
        """0 for a class the stored probabilities lack (a migration reads every old row)."""
        return float(self.probabilities.get(class_id, 0.0)) if self.probabilities else 0.0

    @property
    def malignant_probability(self) -> float:
        return malignant_probability(self.probabilities) if self.probabilities else 0.0

    # Cached: the rule asks each field these several times, and a case has up to 200.
    @cached_property
    def leans_malignant(self) -> bool:
        if not self.probabilities:
            return False
        return leans_malignant(self.probabilities)

    @cached_property
    def lean(self) -> str | None:
        """What the screen reads the field as: its likeliest malignant pattern when it leans
        malignant, else its likeliest benign class. This is its most likely class, except
        where a benign class leads a field that leans malignant."""
        if not self.probabilities:
            return None
        side = [c for c in CLASS_IDS if MALIGNANT[c] == self.leans_malignant]
        return max(side, key=self.probability)


@dataclass(frozen=True)
class CaseVerdict:
    """The case's answer and the evidence behind it.

    ``class_id`` is the benign class for a benign case, the subtype pattern of an
    escalated one, and for an uncertain case what the evidence leans to (a malignant
    pattern when any field leans malignant); None when no field could be used.
    """

    status: CaseStatus
    class_id: str | None
    # Mean calibrated probabilities over the answered fields.
    probabilities: dict[str, float]
    n_fields: int
    n_used: int
    excluded: dict[FieldState, int]
    # Answered fields, by their own verdict.
    votes: dict[str, int] = field(default_factory=dict)
    # Positions of the fields that escalate the case (answered, malignant, confident).
    malignant_fields: tuple[int, ...] = ()
    # Positions of answered malignant fields below the escalation threshold.
    weak_malignant_fields: tuple[int, ...] = ()
    # Positions of uncertain fields, and of those that lean malignant.
    uncertain_fields: tuple[int, ...] = ()
    uncertain_malignant_fields: tuple[int, ...] = ()
    # The subtypes the escalating fields show, by count.
    subtype_votes: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    # Leukocytes of the answered fields by class; empty for a model that reads whole fields.
    cell_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_cells(self) -> int:
        return sum(self.cell_counts.values())

    @property
    def blast_cells(self) -> int:
        """Leukocytes of the answered fields whose most likely class is a malignant one."""
        return sum(n for c, n in self.cell_counts.items() if MALIGNANT[c])

    @property
    def blast_share(self) -> float:
        return self.blast_cells / self.n_cells if self.n_cells else 0.0

    @property
    def uncertain(self) -> bool:
        return self.status == "uncertain"

    @property
    def escalated(self) -> bool:
        return bool(self.malignant_fields)

    @property
    def malignant_share(self) -> float:
        """Escalating fields as a share of all the case's fields."""
        return len(self.malignant_fields) / self.n_fields if self.n_fields else 0.0

    @property
    def subtype_disagreement(self) -> bool:
        return len(self.subtype_votes) > 1

    @property
    def n_uncertain(self) -> int:
        return self.excluded.get("uncertain", 0)

    @property
    def mostly_uncertain(self) -> bool:
        """More than half the fields were uncertain: say so beside any agreement figure."""
        return self.n_uncertain * 2 > self.n_fields

    @property
    def review_positions(self) -> tuple[int, ...]:
        """Fields the verdict rests on as malignant or uncertain: a reviewer opens these."""
        return tuple(
            sorted(
                set(self.malignant_fields)
                | set(self.weak_malignant_fields)
                | set(self.uncertain_fields)
            )
        )


def case_verdict(fields: Sequence[FieldOutcome], rule: CaseRuleSpec) -> CaseVerdict:
    """Screen the fields of one case by the rule in this module's docstring."""
    fields = [f if f.position else _numbered(f, i) for i, f in enumerate(fields, start=1)]
    used = [f for f in fields if f.state == "answered" and f.probabilities]
    excluded: dict[FieldState, int] = {
        state: sum(1 for f in fields if f.state == state)
        for state in ("uncertain", "out_of_distribution", "refused")
    }
    uncertain = [f for f in fields if f.state == "uncertain"]
    uncertain_malignant = tuple(_position(f) for f in uncertain if f.leans_malignant)
    if not used:
        empty = "no field could be used" if fields else "the case has no fields yet"
        leaning = _pattern([f for f in fields if f.state == "uncertain" and f.probabilities])
        return CaseVerdict(
            "uncertain",
            leaning,
            {},
            len(fields),
            0,
            excluded,
            uncertain_fields=tuple(_position(f) for f in uncertain),
            uncertain_malignant_fields=uncertain_malignant,
            reason=empty,
        )
    probabilities = {c: sum(f.probability(c) for f in used) / len(used) for c in CLASS_IDS}
    votes = Counter(f.lean for f in used)
    malignant = [f for f in used if f.leans_malignant]
    escalating = [f for f in malignant if f.malignant_probability >= rule.escalate_at]
    weak = [f for f in malignant if f.malignant_probability < rule.escalate_at]
    subtype_votes = Counter(f.lean for f in escalating)
    status: CaseStatus
    if escalating:
        status, class_id, reason = "malignant", _pattern(escalating), None
    elif weak:
        status, class_id = "uncertain", _pattern(weak)
        reason = (
            f"{_count(len(weak), 'answered field')} lean{'s' if len(weak) == 1 else ''} "
            f"malignant (field{'s' if len(weak) > 1 else ''} {_list(weak)}) with a malignant "
            f"probability below the screening threshold of {rule.escalate_at:.1%}"
        )
    elif uncertain_malignant:
        unsure = [f for f in uncertain if _position(f) in uncertain_malignant]
        status, class_id = "uncertain", _pattern(unsure)
        reason = (
            f"{_count(len(unsure), 'field')} the model was unsure of "
            f"lean{'s' if len(unsure) == 1 else ''} malignant "
            f"(field{'s' if len(unsure) > 1 else ''} {_list(unsure)}): the case is not "
            "called benign until they are looked at"
        )
    elif len(used) < rule.min_used_share * len(fields):
        status, class_id = "uncertain", BENIGN
        reason = (
            f"only {len(used)} of {len(fields)} fields could be used "
            f"(at least {rule.min_used_share:.0%} are needed to call a case benign)"
        )
    else:
        status, class_id, reason = "benign", BENIGN, None
    return CaseVerdict(
        status=status,
        class_id=class_id,
        probabilities=probabilities,
        n_fields=len(fields),
        n_used=len(used),
        excluded=excluded,
        votes={c: votes[c] for c in CLASS_IDS if votes[c]},
        malignant_fields=tuple(_position(f) for f in escalating),
        weak_malignant_fields=tuple(_position(f) for f in weak),
        uncertain_fields=tuple(_position(f) for f in uncertain),
        uncertain_malignant_fields=uncertain_malignant,
        subtype_votes={c: subtype_votes[c] for c in CLASS_IDS if subtype_votes[c]},
        reason=reason,
        cell_counts=_cell_counts(used),
    )


def _cell_counts(fields: Sequence[FieldOutcome]) -> dict[str, int]:
    """The answered fields' leukocytes by class; empty when no field has cells."""
    if not any(f.cells for f in fields):
        return {}
    return {c: sum(int((f.cells or {}).get(c, 0)) for f in fields) for c in CLASS_IDS}


def _numbered(f: FieldOutcome, position: int) -> FieldOutcome:
    return FieldOutcome(f.state, f.probabilities, position, f.cells)


def _position(f: FieldOutcome) -> int:
    return int(f.position or 0)


def _pattern(fields: Sequence[FieldOutcome]) -> str | None:
    """The class most of ``fields`` lean to; ties go to the higher summed probability."""
    if not fields:
        return None
    counts = Counter(f.lean for f in fields)
    mass = {c: sum(f.probability(c) for f in fields) for c in CLASS_IDS}
    return max((c for c in CLASS_IDS if counts[c]), key=lambda c: (counts[c], mass[c]))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _list(fields: Sequence[FieldOutcome]) -> str:
    return ", ".join(str(_position(f)) for f in fields)
