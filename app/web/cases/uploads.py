"""Reading a case's uploaded photographs and analysing them into the case, in batches."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from flask import current_app, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from app.core.case_words import CASE_STATUSES, REVIEW_STATES
from app.core.errors import RequestRefusedError
from app.core.pictures import FieldPictures
from app.records.cases import (
    MAX_FIELDS,
    MAX_PAGE,
    CaseInputError,
    CaseQuery,
    TooManyFieldsError,
    add_field,
    delete_case,
    get_case,
    refresh,
    require_open,
)
from app.records.image_store import ImageStore
from app.records.schema import Case, CaseField
from app.web.auth import actor, audit
from app.web.extensions import inference
from app.web.records import ConcurrentChangeError, commit, db, image_store
from app.web.search_args import dates_and_page
from app.web.uploads import decoding_groups

if TYPE_CHECKING:
    from app.core.reading import DecodedCells, DecodedImage
    from app.core.service import InferenceService  # its module loads TensorFlow

FIELD_NAME = "images"
# A case's photographs come in one request: its size limit is this setting, not one photograph's.
CASE_UPLOAD_LIMIT = "MAX_CASE_UPLOAD_BYTES"


class FileTooLargeError(RequestRefusedError):
    status = 413
    code = "payload_too_large"


class ModelChangedError(RequestRefusedError):
    status = 409
    code = "model_changed"


def uploaded_files() -> list[FileStorage]:
    files = [f for f in request.files.getlist(FIELD_NAME) if f.filename]
    if len(files) > MAX_FIELDS:
        raise TooManyFieldsError(
            f"{len(files)} files were sent; a case holds at most {MAX_FIELDS} photographs."
        )
    return files


def analyse_into(case: Case, files: list[FileStorage]) -> list[CaseField]:
    """Classify ``files`` with the case's model and add each, or its refusal, to the case."""
    if len(case.fields) + len(files) > MAX_FIELDS:
        raise TooManyFieldsError(
            f"A case holds at most {MAX_FIELDS} photographs; this one has {len(case.fields)}."
        )
    service = inference()
    served = service.served(case.model_name).card
    if served.version != case.model_version:
        raise ModelChangedError(
            f"This case was analysed with {served.display_name} version {case.model_version}; "
            f"the server now has version {served.version}. Start a new case for more photographs."
        )
    added = []
    for group in decoding_groups(files):
        added.extend(_analyse_group(service, case, group))
    refresh(case)
    return added


def _analyse_group(
    service: InferenceService, case: Case, group: list[FileStorage]
) -> list[CaseField]:
    """The group's photographs classified and added to the case, each batch as the model
    answers it (the image processes read the next meanwhile); their pixels are let go on
    return, before the next group is decoded."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    payloads = [f.read() for f in group]
    too_large = FileTooLargeError(
        f"The file is too large; the limit per photograph is {limit / 1024 / 1024:g} MB."
    )
    store = image_store()
    accepted = [d for d in payloads if len(d) <= limit]
    # Pictures are made where each photograph is read (an image process or thread), the
    # storing on the image threads, beside the model.
    follow = partial(_keep, accepted, store)
    answers = service.analyse_each(accepted, case.model_name, follow, pixels=False, pictures=True)
    added = []
    for upload, data in zip(group, payloads, strict=True):
        outcome, made = next(answers) if len(data) <= limit else (too_large, None)
        added.append(
            add_field(
                db(),
                case,
                upload.filename or "",
                data,
                outcome,
                store,
                None if made is None else made.pictures,
                None if made is None else made.sha256,
            )
        )
    return added


@dataclass(frozen=True)
class Kept:
    """A classified photograph's pictures, and its sha256 once stored (None: no store)."""

    pictures: FieldPictures
    sha256: str | None


def _keep(
    payloads: list[bytes],
    store: ImageStore | None,
    index: int,
    decoded: DecodedImage | DecodedCells,
) -> Kept:
    # Loaded with the service already; imported here so the flask commands skip SciPy.
    from app.core.reading import pictures_of

    return Kept(pictures_of(decoded), None if store is None else store.put(payloads[index]))


def add_to_case(public_id: str, when_empty: str) -> tuple[Case, list[CaseField]]:
    """Analyse the request's photographs into an open case and commit them, with their
    audit event."""
    case = get_case(db(), public_id)
    files = uploaded_files()
    if not files:
        raise CaseInputError(when_empty)
    added = analyse_into(case, files)
    return save_added(case, added), added


def remove_case(case: Case) -> None:
    """Delete the case, commit, then remove the stored photographs no other case uses."""
    store = image_store()
    audit("case_deleted", "case", case.public_id, reference=case.reference)
    unused = delete_case(db(), case, store)
    commit()
    if store is not None:
        for sha256 in unused:
            store.delete(sha256)


# A clash means another upload committed first, so an upload among n at once can lose n - 1
# times; SQLite has no row lock to queue them, so they retry, spread apart by a random wait.
CLASH_ATTEMPTS = 20
CLASH_WAIT_S = 0.005


def save_added(case: Case, added: list[CaseField], attempts: int = CLASH_ATTEMPTS) -> Case:
    """Commit fields added to an existing case, after the fields other uploads to the same
    case committed first; nothing is classified again when positions clash."""
    for attempt in range(1, attempts + 1):
        try:
            _place_last(case, added)
            if not _announced_with_the_case(case):
                audit("case_fields_added", "case", case.public_id, count=len(added))
            db().commit()
            return case
        except IntegrityError:
            db().rollback()  # the fields are kept in memory, detached
        time.sleep(random.uniform(0, CLASH_WAIT_S * attempt))
        case = get_case(db(), case.public_id)
        require_open(case)
        if len(case.fields) + len(added) > MAX_FIELDS:
            raise TooManyFieldsError(f"A case holds at most {MAX_FIELDS} photographs.")
        case.fields.extend(added)
    raise ConcurrentChangeError("The case is being changed by other requests; send this again.")


def _announced_with_the_case(case: Case) -> bool:
    """Whether these photographs are ones the new-case page's script announced with the case
    (``files_follow``) and now sends one at a time: the case's creation event already counts
    them, so the upload is one event, not one per photograph."""
    return (
        request.blueprint == "cases"
        and request.accept_mimetypes.best == "application/json"
        and case.expected_fields is not None
        and case.created_by == actor()
        and len(case.fields) <= case.expected_fields
    )


def _place_last(case: Case, added: list[CaseField]) -> None:
    """Number ``added`` after the case's committed fields, holding the case row meanwhile
    (PostgreSQL; SQLite lets one writer in at a time and a clash is retried)."""
    with db().no_autoflush:
        db().execute(select(Case.id).where(Case.id == case.id).with_for_update())
        last = db().scalar(select(func.max(CaseField.position)).where(CaseField.case_id == case.id))
    for offset, item in enumerate(added, start=1):
        item.position = (last or 0) + offset
    refresh(case)


def case_query() -> CaseQuery:
    """The case-history search in the query string; CaseInputError when it is malformed."""
    args = request.args
    since, until, page = dates_and_page(args)
    status, review = args.get("status", ""), args.get("review", "")
    if status and status not in CASE_STATUSES:
        raise CaseInputError(f"The verdict to search for is one of: {', '.join(CASE_STATUSES)}.")
    if review and review not in REVIEW_STATES:
        raise CaseInputError(f"The review state is one of: {', '.join(REVIEW_STATES)}.")
    return CaseQuery(
        reference=args.get("reference", "").strip()[:64],
        since=since,
        until=until,
        status=status,
        review=review,
        page=min(page, MAX_PAGE),
    )
