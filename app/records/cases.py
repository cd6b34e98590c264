"""What can be done to a case: create it, add analysed fields, note who opened which
field, reclassify a cell a cell model read, review, sign off, delete.

Each function changes the session only; the caller commits once per request, so a
failure part-way leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, defer, selectinload

from app.core.case_verdict import CaseVerdict, FieldOutcome, FieldState, case_verdict
from app.core.case_words import REVIEW_DECISIONS
from app.core.classes import CLASS_IDS
from app.core.errors import RequestRefusedError
from app.core.model_card import CaseRuleSpec, ModelCard
from app.core.pictures import FieldPictures
from app.core.prediction import Prediction
from app.records.cell_writes import hold_cells
from app.records.image_store import ImageStore
from app.records.schema import Case, CaseField, CellCrop, FieldView, Review, utcnow

MAX_FIELDS = 200
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/:#-]{0,63}$")
MAX_NOTE = 2000
MAX_COMMENT = 2000
MAX_FINDING = 500
MAX_CONFIRMATION = 500
MIN_CONFIRMATION = 10
# A reviewer's verdicts beyond the four classes; ``Review.class_id`` holds the id.
FINDINGS = {
    "blasts_unassessable": "Blasts present, subtype not assessable",
    "non_diagnostic": "Non-diagnostic: insufficient or poor images",
    "other_finding": "No B-ALL: other finding",
    "refer_flow": "Refer for flow cytometry",
}
OTHER_FINDING = "other_finding"


class CaseInputError(RequestRefusedError):
    """A case form or request that cannot be accepted as it is."""

    status = 422
    code = "invalid_case"


class CaseNotFoundError(RequestRefusedError):
    status = 404
    code = "case_not_found"


class FieldsNotOpenedError(CaseInputError):
    """A sign-off before the reviewer opened the fields the verdict rests on."""

    code = "fields_not_opened"


class IncompleteCaseError(CaseInputError):
    """A sign-off of a case whose upload stopped part-way, not acknowledged."""

    code = "case_incomplete"


class CaseLockedError(RequestRefusedError):
    """The case is signed off: it can only be corrected by a new, linked review."""

    status = 409
    code = "case_signed_off"


class TooManyFieldsError(RequestRefusedError):
    status = 413
    code = "too_many_fields"


class CellNotFoundError(RequestRefusedError):
    status = 404
    code = "cell_not_found"


def clean_reference(raw: str | None) -> str:
    reference = (raw or "").strip()
    if not reference:
        raise CaseInputError("Give the case a reference: the lab's accession number.")
    if not REFERENCE_PATTERN.match(reference):
        raise CaseInputError(
            "The reference may hold letters, digits, spaces and . _ / : # - (at most 64), "
            "starting with a letter or digit."
        )
    return reference


def clean_text(raw: str | None, limit: int, what: str) -> str:
    text = (raw or "").strip()
    if len(text) > limit:
        raise CaseInputError(f"The {what} is too long: at most {limit} characters.")
    return text


def new_public_id() -> str:
    """A case's URL id; never led by "-" or "_", which spreadsheets and command lines misread."""
    while True:
        candidate = secrets.token_urlsafe(12)
        if candidate[0].isalnum():
            return candidate


def new_case(
    session: Session,
    reference: str | None,
    note: str | None,
    model: ModelCard,
    created_by: str | None = None,
) -> Case:
    case = Case(
        public_id=new_public_id(),
        reference=clean_reference(reference),
        note=clean_text(note, MAX_NOTE, "note"),
        created_by=created_by,
        model_name=model.name,
        model_version=model.version,
        rule=dataclasses.asdict(model.case_rule or CaseRuleSpec()),
        reviews=[],  # known empty: reading them after the commit asks the database nothing
    )
    session.add(case)
    return case


def find_case(session: Session, public_id: str) -> Case | None:
    return session.scalars(
        select(Case)
        .where(Case.public_id == public_id)
        .options(selectinload(Case.fields), selectinload(Case.reviews))
    ).one_or_none()


def get_case(session: Session, public_id: str) -> Case:
    case = find_case(session, public_id)
    if case is None:
        raise CaseNotFoundError("There is no such case: it may have been deleted.")
    return case


def cell_index(session: Session, case: Case) -> list[tuple[int, int, int]]:
    """(crop id, field position, crop index) of every cell crop of the case, in order."""
    rows = session.execute(
        select(CellCrop.id, CaseField.position, CellCrop.index)
        .join(CaseField, CellCrop.field_id == CaseField.id)
        .where(CaseField.case_id == case.id)
        .order_by(CaseField.position, CellCrop.index)
    )
    return [(int(a), int(b), int(c)) for a, b, c in rows]


def cell_image(session: Session, case: Case, crop_id: int) -> bytes | None:
    return session.scalar(
        select(CellCrop.image)
        .join(CaseField, CellCrop.field_id == CaseField.id)
        .where(CaseField.case_id == case.id, CellCrop.id == crop_id)
    )


@dataclass(frozen=True, slots=True)
class ClassifiedCell:
    """A cell a cell model read, as the case's pages and API show it: its crop's columns
    but the image, read as plain rows (ORM objects for a case's hundreds of cells cost
    several times as much)."""

    id: int
    index: int
    box: list[int]
    class_id: str
    probabilities: dict[str, float] | None
    attention: float | None
    status: str | None
    reviewed_class: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None

    @property
    def shown_class(self) -> str:
        """The reviewer's class when there is one, else the model's."""
        return self.reviewed_class or self.class_id


# The columns of a ClassifiedCell, in its order.
_CELL_COLUMNS = tuple(getattr(CellCrop, f.name) for f in dataclasses.fields(ClassifiedCell))


def classified_cells(session: Session, case: Case) -> list[tuple[int, ClassifiedCell]]:
    """(field position, cell) of every cell a cell model read in the case, in order."""
    rows = session.execute(
        select(CaseField.position, *_CELL_COLUMNS)
        .join(CaseField, CellCrop.field_id == CaseField.id)
        .where(CaseField.case_id == case.id, CellCrop.class_id.is_not(None))
        .order_by(CaseField.position, CellCrop.index)
    )
    return [(int(position), ClassifiedCell(*cell)) for position, *cell in rows]


@dataclass(frozen=True)
class CellCounts:
    """A differential of leukocytes: per class, the model's count and the count once the
    reviewer's classes replace the model's, and how many cells a reviewer classified."""

    model: dict[str, int]
    reviewed: dict[str, int]
    total: int
    n_reviewed: int


def cell_counts(cells: Sequence[CellCrop | ClassifiedCell]) -> CellCounts:
    """The differential of ``cells`` (those a cell model classified)."""
    model = dict.fromkeys(CLASS_IDS, 0)
    reviewed = dict.fromkeys(CLASS_IDS, 0)
    n_reviewed = 0
    for cell in cells:
        if cell.class_id is None:
            continue
        model[cell.class_id] += 1
        reviewed[cell.shown_class or cell.class_id] += 1
        n_reviewed += cell.reviewed_class is not None
    return CellCounts(model, reviewed, sum(model.values()), n_reviewed)


@dataclass(frozen=True)
class Reclassified:
    """A cell's class changed by a reviewer: where it is, and its class before and after."""

    cell: CellCrop
    position: int
    before: str
    after: str


def reclassify_cell(
    session: Session, case: Case, cell_id: int, class_id: str | None, reviewer: str | None
) -> Reclassified | None:
    """Give a cell a cell model read the reviewer's class (the model's own confirms it);
    None when the reviewer had already given it that class. Refused on a signed-off case."""
    require_open(case)
    if class_id not in CLASS_IDS:
        raise CaseInputError(f"Choose the cell's class: one of {', '.join(CLASS_IDS)}.")
    found = session.execute(
        select(CellCrop, CaseField.position)
        .join(CaseField, CellCrop.field_id == CaseField.id)
        .where(CaseField.case_id == case.id, CellCrop.id == cell_id)
        .options(defer(CellCrop.image))
    ).one_or_none()
    if found is None or found[0].class_id is None:
        raise CellNotFoundError("There is no such classified cell in this case.")
    cell, position = found
    if cell.reviewed_class == class_id:
        return None
    before = str(cell.shown_class)
    cell.reviewed_class, cell.reviewed_by, cell.reviewed_at = class_id, reviewer, utcnow()
    case.updated_at = utcnow()
    session.flush()
    _recount(session, next(f for f in case.fields if f.id == cell.field_id))
    return Reclassified(cell, int(position), before, class_id)


def _recount(session: Session, item: CaseField) -> None:
    """Keep the field's differential current: the case verdict reads it from ``checks``
    (``field_outcome``), so listing cases never loads their cells."""
    cells = session.scalars(
        select(CellCrop).where(CellCrop.field_id == item.id).options(defer(CellCrop.image))
    )
    counts = cell_counts(list(cells))
    kept = dict(item.checks.get("cells") or {})
    # A new dict: an in-place change of a JSON column is not seen by the session.
    item.checks = {
        **item.checks,
        "cells": {**kept, "model": counts.model, "reviewed": counts.reviewed},
    }


def require_open(case: Case) -> None:
    if case.signed_off is not None:
        raise CaseLockedError(
            "This case is signed off and can no longer change; record a correction instead."
        )


def add_field(
    session: Session,
    case: Case,
    filename: str,
    data: bytes,
    outcome: Prediction | RequestRefusedError,
    store: ImageStore | None,
    pictures: FieldPictures | None,
    stored_as: str | None = None,
) -> CaseField:
    """Record one uploaded photograph and what came of it (its prediction or its refusal).
    A prediction comes with its ``pictures``, the thumbnail and cell crops the caller made
    (``app.core.explanation.gallery``); a refusal with None. ``stored_as``: the sha256 under
    which the caller has already put the photograph in ``store`` (beside the model pass).

    Its cell crops are inserted with it, in one statement for the flush
    (``app.records.cell_writes``). The caller calls ``refresh`` once its photographs are
    all added."""
    if pictures is None and not isinstance(outcome, RequestRefusedError):
        raise ValueError("a prediction is recorded with its pictures")
    require_open(case)
    if len(case.fields) >= MAX_FIELDS:
        raise TooManyFieldsError(f"A case holds at most {MAX_FIELDS} photographs.")
    # Fields are never removed from a case, so the loaded list holds every position.
    position = 1 + max((f.position for f in case.fields), default=0)
    item = CaseField(
        position=position,
        filename=_safe_name(filename),
        sha256=stored_as or hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
    if isinstance(outcome, RequestRefusedError):
        item.state = "refused"
        item.error_code = outcome.code
        item.error_message = outcome.message
        item.checks = {
            "reason": getattr(outcome, "reason", None),
            "fix": getattr(outcome, "fix", None),
        }
    elif pictures is not None:
        hold_cells(session, item, _record_prediction(item, outcome, pictures))
    if store is not None and not isinstance(outcome, RequestRefusedError):
        if stored_as is None:
            store.put(data)
        item.stored = True
    case.fields.append(item)
    return item


def _record_prediction(
    item: CaseField, p: Prediction, pictures: FieldPictures
) -> list[dict[str, Any]]:
    """Fill in the field's prediction; returns its cell crops as rows to insert with it."""
    item.image_format = p.image_format
    item.width, item.height = p.photograph_size
    item.state = _state(p)
    item.class_id = p.class_id
    item.probabilities = {c: float(v) for c, v in p.probabilities.items()}
    item.checks = {
        "ood": None
        if p.ood is None
        else {
            "score": p.ood.score,
            "threshold": p.ood.threshold,
            "flagged": p.ood.out_of_distribution,
            "reasons": list(p.ood.reasons),
        },
        "uncertain_below": p.uncertain_below,
        "scale": None
        if p.scale is None
        else {
            "field_size_px": p.scale.field_size_px,
            "ratio": p.scale.ratio,
            "resampled_by": p.scale.resampled_by,
            "uncertainty": p.scale.uncertainty,
        },
    }
    item.timings = dataclasses.asdict(p.timings)
    item.thumbnail = pictures.thumbnail
    if p.cells is None:
        return [{"index": c.index, "box": c.box, "image": c.jpeg} for c in pictures.cells]
    # A cell model's pictures are its own cells, in the order of its answers.
    counts = dict(p.cells.counts)
    item.checks["cells"] = {
        "model": counts,
        "reviewed": counts,
        "excluded": dict(p.cells.excluded),
        "um_per_px": p.cells.um_per_px,
    }
    return [
        {
            "index": picture.index,
            "box": list(cell.box),
            "image": picture.jpeg,
            "class_id": cell.class_id,
            "probabilities": {c: float(v) for c, v in cell.probabilities.items()},
            "attention": float(cell.attention),
            "status": cell.status,
        }
        for cell, picture in zip(p.cells.cells, pictures.cells, strict=True)
    ]


def _state(p: Prediction) -> FieldState:
    if p.out_of_distribution:
        return "out_of_distribution"
    return "uncertain" if p.uncertain else "answered"


def _safe_name(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:128]


def refresh(case: Case) -> None:
    """Keep the case's stored verdict and review state current (they are searched on)."""
    v = verdict(case)
    case.status = v.status
    case.class_id = v.class_id
    signed = case.signed_off
    case.review_state = "signed_off" if signed else ("reviewed" if case.reviews else "none")


# The last page a search goes to; beyond it an offset would overflow the database's integer.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class CaseQuery:
    """A search of the case history; every part optional."""

    reference: str = ""
    since: date | None = None
    until: date | None = None
    status: str = ""
    review: str = ""
    page: int = 1
    per_page: int = 25


def search_cases(session: Session, query: CaseQuery) -> tuple[list[Case], int]:
    """One page of the cases matching ``query``, newest first, and how many match in all."""
    where: list[ColumnElement[bool]] = []
    if query.reference:
        where.append(Case.reference.ilike(f"%{_escape_like(query.reference)}%", escape="\\"))
    if query.since:
        where.append(Case.created_at >= datetime.combine(query.since, time.min, UTC))
    if query.until and query.until < date.max:  # the last day has no next day: no bound
        where.append(
            Case.created_at < datetime.combine(query.until + timedelta(days=1), time.min, UTC)
        )
    if query.status:
        where.append(Case.status == query.status)
    if query.review:
        where.append(Case.review_state == query.review)
    total = session.scalar(select(func.count()).select_from(Case).where(*where)) or 0
    cases = session.scalars(
        select(Case)
        .where(*where)
        .order_by(Case.created_at.desc(), Case.id.desc())
        .options(selectinload(Case.fields), selectinload(Case.reviews))
        .offset((max(1, query.page) - 1) * query.per_page)
        .limit(query.per_page)
    )
    return list(cases), int(total)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def field_outcome(item: CaseField) -> FieldOutcome:
    """A field as the case rule takes it; a cell model's with its reviewed differential."""
    cells = (item.checks or {}).get("cells")
    reviewed = cells.get("reviewed") if isinstance(cells, dict) else None
    return FieldOutcome(item.state, item.probabilities, item.position, reviewed)  # type: ignore[arg-type]


def verdict(case: Case) -> CaseVerdict:
    """The case verdict by the rule the case was created with."""
    rule = CaseRuleSpec.from_record(case.rule)
    return case_verdict([field_outcome(f) for f in case.fields], rule)


@dataclass(frozen=True)
class ReviewInput:
    """A review as a form or the API sends it, before it is checked."""

    decision: str | None
    class_id: str | None
    comment: str | None = None
    sign_off: bool = False
    finding: str | None = None
    # What the reviewer saw at the microscope: stands in for opening the flagged fields.
    microscope_confirmation: str | None = None
    acknowledge_incomplete: bool = False
    corrects: int | None = None


def add_review(
    session: Session, case: Case, given: ReviewInput, reviewer: str | None = None
) -> Review:
    """Record a review. On a signed-off case only a signed-off correction is accepted, and
    only when ``corrects`` names the sign-off in force (so a reviewer who did not see it is
    told, not turned into a corrector); nothing already recorded is changed. A sign-off
    needs the reviewer to have opened every field the verdict rests on (or to confirm the
    slide was read at the microscope), and an incomplete upload acknowledged."""
    decision, chosen = _verdict_chosen(case, given.decision, given.class_id)
    finding = _finding(chosen, given.finding)
    _check_correction(case, given)
    text = clean_text(given.comment, MAX_COMMENT, "comment")
    if case.signed_off is not None and not text:
        raise CaseInputError("Say in the comment why the signed-off verdict is corrected.")
    confirmation = _confirmation(given.microscope_confirmation)
    if given.sign_off:
        _check_looked(session, case, reviewer, confirmation)
        _check_complete(case, given.acknowledge_incomplete)
    previous = case.signed_off
    review = Review(
        reviewer=reviewer,
        decision=decision,
        class_id=chosen,
        finding=finding,
        comment=text,
        signed_off=given.sign_off,
        microscope_confirmation=confirmation,
        acknowledged_incomplete=given.sign_off and case.missing_fields > 0,
        supersedes_id=previous.id if previous is not None else None,
    )
    case.reviews.append(review)
    refresh(case)
    session.flush()
    return review


def _verdict_chosen(case: Case, decision: str | None, class_id: str | None) -> tuple[str, str]:
    """(decision, class or finding id); an override naming the model's verdict agrees."""
    if decision not in REVIEW_DECISIONS:
        raise CaseInputError("Choose whether you agree with the case verdict or override it.")
    model = verdict(case)
    answered = not model.uncertain and model.class_id is not None
    if decision == "agree":
        if not answered:
            raise CaseInputError(
                "The case verdict is uncertain, so there is nothing to agree with: "
                "override it with the class or finding you chose."
            )
        return "agree", str(model.class_id)
    if class_id not in CLASS_IDS and class_id not in FINDINGS:
        raise CaseInputError("Choose the class or finding you found.")
    return ("agree" if answered and class_id == model.class_id else "override"), class_id


def _finding(chosen: str, raw: str | None) -> str | None:
    """The words of an "other finding": required with it, refused with any other verdict."""
    text = clean_text(raw, MAX_FINDING, "finding")
    if chosen == OTHER_FINDING and not text:
        raise CaseInputError("Say what the other finding is (e.g. reactive lymphocytosis).")
    if chosen != OTHER_FINDING and text:
        raise CaseInputError(
            'The finding\'s words go with "No B-ALL: other finding" only: choose it, '
            "or clear the finding."
        )
    return text or None


def _confirmation(raw: str | None) -> str | None:
    """What the reviewer saw at the microscope, in a few words; None when not given."""
    if raw is None:
        return None
    text = clean_text(raw, MAX_CONFIRMATION, "microscope confirmation")
    if len(text) < MIN_CONFIRMATION:
        raise CaseInputError(
            "Say in a few words what you saw at the microscope "
            f"(at least {MIN_CONFIRMATION} characters)."
        )
    return text


def _check_correction(case: Case, given: ReviewInput) -> None:
    previous = case.signed_off
    if previous is not None and given.corrects != previous.id:
        who = f" by {previous.reviewer}" if previous.reviewer else ""
        raise CaseLockedError(
            f"This case was signed off{who} at {previous.created_at:%Y-%m-%d %H:%M} UTC. Reload "
            "it to see that verdict; to correct it, record a correction of that sign-off."
        )
    if previous is None and given.corrects is not None:
        raise CaseInputError("There is no sign-off to correct: the case is not signed off.")
    if previous is not None and not given.sign_off:
        raise CaseLockedError("This case is signed off: a correction must be signed off too.")


def _check_looked(
    session: Session, case: Case, reviewer: str | None, confirmation: str | None
) -> None:
    """A sign-off rests on the reviewer's own look at the flagged fields or the slide."""
    if confirmation is not None:
        return
    missing = flagged_fields(session, case, reviewer).to_open
    if missing:
        which = ", ".join(str(p) for p in missing)
        raise FieldsNotOpenedError(
            f"Open field{'s' if len(missing) > 1 else ''} {which} before signing off: the "
            "case verdict rests on them as malignant or uncertain. Or confirm that you "
            "reviewed the slide at the microscope, saying what you saw."
        )


def _check_complete(case: Case, acknowledged: bool) -> None:
    if case.missing_fields and not acknowledged:
        raise IncompleteCaseError(
            f"The upload did not finish: {len(case.fields)} of {case.expected_fields} "
            "photographs arrived. Add the missing ones, or acknowledge that you sign off "
            "on those that arrived."
        )


def record_field_view(session: Session, case: Case, position: int, username: str | None) -> None:
    """Note that ``username`` opened the field; only the first opening is kept, and a
    second one (or two at once) changes nothing and fails nothing."""
    if username is None:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(FieldView)
        .values(case_id=case.id, position=position, username=username, first_seen=utcnow())
        .on_conflict_do_nothing()
    )


@dataclass(frozen=True)
class FlaggedFields:
    """The fields a sign-off asks a reviewer to open (those the verdict rests on as malignant
    or uncertain), in order, and those of them the reviewer has opened."""

    positions: tuple[int, ...]
    opened: frozenset[int]

    @property
    def to_open(self) -> tuple[int, ...]:
        return tuple(p for p in self.positions if p not in self.opened)


def flagged_fields(session: Session, case: Case, username: str | None) -> FlaggedFields:
    """The case's flagged fields and which of them ``username`` has opened: what the case
    page shows and what a sign-off is checked against."""
    positions = verdict(case).review_positions
    if username is None:
        return FlaggedFields(positions, frozenset())
    rows = session.scalars(
        select(FieldView.position).where(
            FieldView.case_id == case.id, FieldView.username == username
        )
    )
    return FlaggedFields(positions, frozenset(int(p) for p in rows))


def delete_case(session: Session, case: Case, store: ImageStore | None) -> list[str]:
    """Delete the case with its fields and reviews; returns the stored files no longer
    needed, which the caller removes once the deletion is committed."""
    hashes = {f.sha256 for f in case.fields if f.stored}
    session.delete(case)
    session.flush()
    if store is None or not hashes:
        return []
    still_used = set(
        session.scalars(
            select(CaseField.sha256).where(CaseField.sha256.in_(hashes), CaseField.stored)
        )
    )
    return sorted(hashes - still_used)
