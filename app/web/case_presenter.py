"""Cases for people and for API clients: the verdict worded, the fields grouped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import url_for

from app.core.case_verdict import CaseVerdict
from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.records.cases import verdict
from app.records.schema import Case, CaseField, Review
from app.web.presenter import class_verdict, percent

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


STATUS_LABELS = {"malignant": "Malignant", "benign": "Benign", "uncertain": "Uncertain"}
REVIEW_LABELS = {
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
    if v.uncertain or v.class_id is None:
        return "Uncertain: no case verdict"
    return class_verdict(v.class_id)


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
    action = "Agreed" if r.decision == "agree" else "Overrode the model"
    return f"{action}: {class_verdict(r.class_id)}"


def field_json(case: Case, item: CaseField) -> dict[str, Any]:
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
    }


def review_json(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "reviewer": r.reviewer,
        "decision": r.decision,
        "class_id": r.class_id,
        "comment": r.comment,
        "signed_off": r.signed_off,
        "supersedes": r.supersedes_id,
        "created_at": r.created_at.isoformat(),
    }


def verdict_json(v: CaseVerdict) -> dict[str, Any]:
    return {
        "probabilities": v.probabilities,
        "fields": v.n_fields,
        "fields_used": v.n_used,
        "excluded": v.excluded,
        "votes": v.votes,
        "agreement": v.agreement,
    }


def case_json(case: Case) -> dict[str, Any]:
    signed = case.signed_off
    v = verdict(case)
    return {
        "id": case.public_id,
        "reference": case.reference,
        # The case verdict in the words of a single prediction; ``class`` is the leading
        # class, a verdict only when ``status`` is benign or malignant.
        "class": v.class_id,
        "status": v.status,
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
        "images": [field_json(case, f) for f in case.fields],
    }
