"""Recording a review from the case page or the API: one transaction with its audit event,
and a clash with another reviewer's sign-off told as such."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.records.cases import CaseInputError, ReviewInput, add_review, verdict
from app.records.schema import Case, Review
from app.web.auth import actor, audit
from app.web.records import clashes_reported, db
from app.web.uploads import TRUE_WORDS

REVIEW_CLASH = (
    "Another reviewer signed this case off, or corrected its sign-off, at the same moment: "
    "reload it to see their verdict."
)
# The page form's fields (what a refused form carries back to the page).
FORM_FIELDS = (
    "decision",
    "class_id",
    "finding",
    "comment",
    "sign_off",
    "microscope",
    "microscope_confirmation",
    "acknowledge_incomplete",
)


def save_review(case: Case, given: ReviewInput) -> Review:
    """Record the signed-in user's review of ``case`` and commit it with its audit event."""
    with clashes_reported(REVIEW_CLASH):
        flagged = verdict(case).review_positions
        review = add_review(db(), case, given, reviewer=actor())
        action = "case_signed_off" if review.signed_off else "case_reviewed"
        audit(action, "case", case.public_id, **_detail(case, review, flagged))
        db().commit()  # inside: a clash at the commit is told as a review clash too
    return review


def _detail(case: Case, review: Review, flagged: tuple[int, ...]) -> dict[str, Any]:
    """The audit event's facts: the verdict, and what the sign-off rested on."""
    detail: dict[str, Any] = {"decision": review.decision, "class": review.class_id}
    if review.supersedes_id is not None:
        detail["corrects_review"] = review.supersedes_id
    if review.signed_off and flagged:
        detail["flagged_fields"] = list(flagged)
    if review.microscope_confirmation is not None:
        detail["microscope_confirmation"] = review.microscope_confirmation
    if review.acknowledged_incomplete:
        detail["acknowledged_incomplete"] = {
            "expected": case.expected_fields,
            "received": len(case.fields),
        }
    return detail


def form_review(form: Mapping[str, str]) -> ReviewInput:
    """The case page's review form: checkboxes send "1", the microscope's words count only
    with their box ticked."""
    words = (form.get("microscope_confirmation") or "").strip()
    ticked = form.get("microscope") == "1"
    if words and not ticked:
        raise CaseInputError(
            'Tick "I reviewed the slide at the microscope" to confirm it, or clear its words.'
        )
    return ReviewInput(
        decision=form.get("decision"),
        class_id=form.get("class_id") or None,
        comment=form.get("comment"),
        sign_off=form.get("sign_off") == "1",
        finding=form.get("finding"),
        microscope_confirmation=words if ticked else None,
        acknowledge_incomplete=form.get("acknowledge_incomplete") == "1",
        corrects=_review_id(form.get("corrects")),
    )


def api_review(data: Mapping[str, Any]) -> ReviewInput:
    """The API's review, JSON or form: ``class`` names the class or finding; a non-empty
    ``microscope_confirmation`` confirms the slide was read at the microscope."""
    words = _text(data.get("microscope_confirmation"))
    return ReviewInput(
        decision=_text(data.get("decision")),
        class_id=_text(data.get("class")),
        comment=_text(data.get("comment")),
        sign_off=_true(data.get("sign_off")),
        finding=_text(data.get("finding")),
        microscope_confirmation=words if words and words.strip() else None,
        acknowledge_incomplete=_true(data.get("acknowledge_incomplete")),
        corrects=_review_id(data.get("corrects")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _true(value: object) -> bool:
    return str(value if value is not None else "").lower() in TRUE_WORDS


def _review_id(raw: object) -> int | None:
    """``corrects`` as a form or JSON sends it: the id of the sign-off being corrected."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise CaseInputError("'corrects' is the id of the sign-off being corrected.")
