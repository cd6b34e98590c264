"""Cases for people and for API clients: the verdict worded, the fields grouped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import url_for
from sqlalchemy import select

from app.core.case_verdict import CaseVerdict
from app.core.case_words import CASE_STATUSES, ReviewState
from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.core.model_card import CaseRuleSpec
from app.records.cases import FINDINGS, verdict
from app.records.schema import Case, CaseField, Review, User
from app.web.analysis.presenter import (
    BLASTS_SUSPECTED,
    SUBTYPE_NOTE,
    class_verdict,
    percent,
    subtype_json,
)
from app.web.cases.cell_gallery import cells_json
from app.web.extensions import inference
from app.web.records import db

STATE_LABELS = {
    "answered": "Answered",
    "uncertain": "Uncertain",
    "out_of_distribution": "Unlike the training smears",
    "refused": "Not analysed",
}
# The grid's filters: every field, or those of one verdict or state.
FILTERS = {
    "all": "All fields",
    "malignant": "Malignant",
    "benign": "Benign",
    "uncertain": "Uncertain",
    "out_of_distribution": "Unlike the training smears",
    "refused": "Not analysed",
}


STATUS_LABELS = {status: status.capitalize() for status in CASE_STATUSES}
REVIEW_LABELS: dict[ReviewState, str] = {
    "none": "Not reviewed",
    "reviewed": "Reviewed, not signed off",
    "signed_off": "Signed off",
}


def case_summary_json(case: Case) -> dict[str, Any]:
    """A case in a list: what it is and where it stands, without its images."""
    return {
        "id": case.public_id,
        "reference": case.reference,
        "class": case.class_id,
        "status": case.status,
        "review_state": case.review_state,
        "images": len(case.fields),
        # An upload that stopped part-way is marked here as in the case itself.
        "upload": {
            "expected": case.expected_fields,
            "received": len(case.fields),
            "complete": case.missing_fields == 0,
        },
        "created_at": case.created_at.isoformat(),
        "model": {"name": case.model_name, "version": case.model_version},
        "url": url_for("case_api.show", public_id=case.public_id),
    }


def field_group(item: CaseField) -> str:
    """A field's status in the words of a single prediction, or ``refused``; also the
    grid filter it belongs to."""
    if item.state == "answered" and item.class_id is not None:
        return "malignant" if MALIGNANT[item.class_id] else "benign"
    return item.state


def field_label(item: CaseField) -> str:
    if item.state == "answered" and item.class_id is not None:
        return class_verdict(item.class_id)
    if item.state == "refused":
        return f"Not analysed: {item.error_message or 'the file could not be read'}"
    return STATE_LABELS[item.state]


def case_headline(v: CaseVerdict) -> str:
    """The case's answer in one line; an escalated case says how many fields show blasts."""
    if v.status == "malignant" and v.class_id is not None:
        return (
            f"{BLASTS_SUSPECTED} in {len(v.malignant_fields)} of {_fields(v.n_fields)}: "
            f"pattern most like {DISPLAY_NAMES[v.class_id]}"
        )
    if v.uncertain or v.class_id is None:
        return "Uncertain: no case verdict"
    return class_verdict(v.class_id)


def case_findings(v: CaseVerdict) -> list[str]:
    """The evidence under the headline, in sentences: what escalated the case, where the
    fields disagree, what is left to look at, and how many fields were set aside."""
    lines = []
    if v.malignant_fields:
        lines.append(
            f"{_fields(len(v.malignant_fields)).capitalize()} of {v.n_fields} "
            f"({v.malignant_share:.0%}) show blasts confidently enough to escalate the case: "
            f"{_positions(v.malignant_fields)}. One such field is enough: a screen does not "
            "let benign fields outvote it."
        )
        lines.append(f"The subtype is a pattern seen in morphology ({SUBTYPE_NOTE}).")
    if v.subtype_disagreement:
        counts = ", ".join(f"{n} {DISPLAY_NAMES[c]}" for c, n in v.subtype_votes.items())
        lines.append(f"The fields with blasts disagree on the subtype: {counts}.")
    if v.uncertain_malignant_fields:
        lines.append(
            f"{_fields(len(v.uncertain_malignant_fields)).capitalize()} the model was unsure "
            f"of lean{'s' if len(v.uncertain_malignant_fields) == 1 else ''} malignant: "
            f"{_positions(v.uncertain_malignant_fields)}. Open them."
        )
    lines.append(field_counts(v))
    if v.n_cells:
        lines.append(cell_differential(v))
    if v.mostly_uncertain:
        lines.append(
            f"Most fields ({v.n_uncertain} of {v.n_fields}) were uncertain: the verdict rests on "
            f"the {v.n_used} the model answered."
        )
    return lines


def field_counts(v: CaseVerdict) -> str:
    """Every field counted once: with blasts, benign, below the threshold, or set aside."""
    parts = [f"{len(v.malignant_fields)} with blasts", f"{v.votes.get('benign', 0)} benign"]
    if v.weak_malignant_fields:
        parts.append(f"{len(v.weak_malignant_fields)} leaning malignant below the threshold")
    parts += [
        f"{v.excluded.get('uncertain', 0)} uncertain",
        f"{v.excluded.get('out_of_distribution', 0)} unlike the training smears",
        f"{v.excluded.get('refused', 0)} not analysed",
    ]
    return f"Of {_fields(v.n_fields)}: {', '.join(parts)}."


def _fields(n: int) -> str:
    return f"{n} field{'' if n == 1 else 's'}"


def _positions(positions: tuple[int, ...]) -> str:
    return ("field " if len(positions) == 1 else "fields ") + ", ".join(map(str, positions))


@dataclass(frozen=True)
class Evidence:
    class_id: str
    label: str
    malignant: bool
    percent: float
    text: str
    votes: int
    top: bool


def evidence(v: CaseVerdict) -> list[Evidence]:
    """Per class: the mean probability over the fields used and how many fields chose it."""
    return [
        Evidence(
            class_id=c,
            label=DISPLAY_NAMES[c],
            malignant=MALIGNANT[c],
            percent=round(v.probabilities.get(c, 0.0) * 100, 1),
            text=percent(v.probabilities.get(c, 0.0)) if v.probabilities else "n/a",
            votes=v.votes.get(c, 0),
            top=c == v.class_id,
        )
        for c in CLASS_IDS
    ]


def review_label(r: Review) -> str:
    """The reviewer's verdict in words: a class, or a finding (with its words)."""
    action = "Agreed" if r.decision == "agree" else "Overrode the model"
    if r.class_id in FINDINGS:
        words = f" ({r.finding})" if r.finding else ""
        return f"{action}: {FINDINGS[r.class_id]}{words}"
    return f"{action}: {class_verdict(r.class_id)}"


def field_json(case: Case, item: CaseField, cells: dict[str, Any] | None = None) -> dict[str, Any]:
    """A field of a case; a cell model's also has its ``cells`` and ``cell_counts``."""
    return {
        "position": item.position,
        "class": item.class_id,
        "status": field_group(item),
        "filename": item.filename,
        "sha256": item.sha256,
        "size_bytes": item.size_bytes,
        "format": item.image_format,
        "width": item.width,
        "height": item.height,
        "probabilities": item.probabilities,
        "checks": item.checks,
        "timings_ms": item.timings,
        "error": None
        if item.error_code is None
        else {"code": item.error_code, "message": item.error_message},
        "stored": item.stored,
        "thumbnail_url": url_for(
            "cases.thumbnail", public_id=case.public_id, position=item.position
        )
        if item.thumbnail
        else None,
        **(cells or {}),
    }


def review_json(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "reviewer": r.reviewer,
        "decision": r.decision,
        # A class id, or a finding id (``kind`` says which).
        "class_id": r.class_id,
        "kind": "finding" if r.class_id in FINDINGS else "class",
        "finding": r.finding,
        "label": review_label(r),
        "comment": r.comment,
        "signed_off": r.signed_off,
        "microscope_confirmation": r.microscope_confirmation,
        "acknowledged_incomplete": r.acknowledged_incomplete,
        "supersedes": r.supersedes_id,
        "created_at": r.created_at.isoformat(),
    }


def cell_differential(v: CaseVerdict) -> str:
    """A cell model's leukocytes over the answered fields: how many look blast-like, by class."""
    parts = ", ".join(f"{n} {DISPLAY_NAMES[c]}" for c, n in v.cell_counts.items() if n)
    return (
        f"{v.blast_cells} of {v.n_cells} leukocytes in the answered fields "
        f"({v.blast_share:.0%}) look blast-like; by pattern: {parts}."
    )


def verdict_json(v: CaseVerdict) -> dict[str, Any]:
    return {
        "probabilities": v.probabilities,
        "fields": v.n_fields,
        "fields_used": v.n_used,
        "excluded": v.excluded,
        "votes": v.votes,
        # The screen: fields that escalate the case, and those a reviewer must look at.
        "escalated": v.escalated,
        "malignant_fields": list(v.malignant_fields),
        "malignant_share": round(v.malignant_share, 4),
        "weak_malignant_fields": list(v.weak_malignant_fields),
        "uncertain_fields": list(v.uncertain_fields),
        "uncertain_malignant_fields": list(v.uncertain_malignant_fields),
        "review_fields": list(v.review_positions),
        "subtype_votes": v.subtype_votes,
        "subtype_disagreement": v.subtype_disagreement,
        "mostly_uncertain": v.mostly_uncertain,
        # A cell model's differential of the answered fields (empty for a field model).
        "cell_counts": v.cell_counts,
        "blast_cells": v.blast_cells,
        "blast_share": round(v.blast_share, 4),
        "findings": case_findings(v),
    }


def case_json(case: Case) -> dict[str, Any]:
    signed = case.signed_off
    v = verdict(case)
    field_cells, counts = cells_json(case)
    return {
        "id": case.public_id,
        "reference": case.reference,
        # The case verdict in the words of a single prediction; ``class`` is the leading
        # class, a verdict only when ``status`` is benign or malignant.
        "class": v.class_id,
        "status": v.status,
        "headline": case_headline(v),
        "subtype": subtype_json(v.class_id, v.status == "malignant"),
        "reason": v.reason,
        "evidence": verdict_json(v),
        "url": url_for("cases.show", public_id=case.public_id, _external=True),
        "note": case.note,
        "created_by": case.created_by,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "model": {"name": case.model_name, "version": case.model_version},
        "rule": case.rule,
        # An upload that sent the photographs one by one and stopped part-way says so here.
        "upload": {
            "expected": case.expected_fields,
            "received": len(case.fields),
            "complete": case.missing_fields == 0,
        },
        "signed_off": signed is not None,
        "review": None if signed is None else review_json(signed),
        "reviews": [review_json(r) for r in case.reviews],
        "images": [field_json(case, f, field_cells.get(f.position)) for f in case.fields],
        # A cell model's differential of every field, before and after review (else null).
        "cell_counts": counts,
    }


def model_display_name(name: str) -> str:
    """The served model's name for people, or its id when it is no longer served."""
    service = inference()
    cards = {card.name: card for card in service.models()} if service.ready else {}
    return cards[name].display_name if name in cards else name


def rule_text(case: Case) -> str:
    """The screening rule the case was judged by, in words."""
    rule = CaseRuleSpec.from_record(case.rule)
    escalate = (
        "any answered malignant field"
        if rule.escalate_at <= 0
        else f"an answered field with malignant probability at least {percent(rule.escalate_at)}"
    )
    return (
        f"screening: {escalate} escalates the case; benign needs at least "
        f"{rule.min_used_share:.0%} of the fields answered and none malignant"
    )


def people_names(case: Case) -> dict[str, str]:
    """Username -> "Full Name (username)" for everyone who created or reviewed the case."""
    usernames = {r.reviewer for r in case.reviews if r.reviewer}
    if case.created_by:
        usernames.add(case.created_by)
    if not usernames:
        return {}
    users = db().scalars(select(User).where(User.username.in_(usernames)))
    return {u.username: f"{u.display_name} ({u.username})" for u in users if u.display_name}
