"""Recording a review from the case page or the API: one transaction with its audit event,
and a clash with another reviewer's sign-off told as such."""

from __future__ import annotations

from typing import Any

from app.records.cases import CaseInputError, add_review
from app.records.schema import Case, Review
from app.web.auth import actor, audit
from app.web.records import clashes_reported, db

REVIEW_CLASH = (
    "Another reviewer signed this case off, or corrected its sign-off, at the same moment: "
    "reload it to see their verdict."
)


def save_review(
    case: Case,
    decision: str | None,
    class_id: str | None,
    comment: str | None,
    sign_off: bool,
    corrects: object,
) -> Review:
    """Record the signed-in user's review of ``case`` and commit it with its audit event."""
    with clashes_reported(REVIEW_CLASH):
        review = add_review(
            db(),
            case,
            decision=decision,
            class_id=class_id,
            comment=comment,
            sign_off=sign_off,
            reviewer=actor(),
            corrects=_review_id(corrects),
        )
        detail: dict[str, Any] = {"decision": review.decision, "class": review.class_id}
        if review.supersedes_id is not None:
            detail["corrects_review"] = review.supersedes_id
        action = "case_signed_off" if review.signed_off else "case_reviewed"
        audit(action, "case", case.public_id, **detail)
        db().commit()  # inside: a clash at the commit is told as a review clash too
    return review


def _review_id(raw: object) -> int | None:
    """``corrects`` as a form or JSON sends it: the id of the sign-off being corrected."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise CaseInputError("'corrects' is the id of the sign-off being corrected.")
