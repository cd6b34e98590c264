"""Cases written straight to the records, for tests that need many fields or a known mix
of answers without classifying photographs."""

from __future__ import annotations

import hashlib

from flask import Flask

from app.core.classes import CLASS_IDS
from app.core.model_card import ModelCard
from app.records.cases import new_case, refresh
from app.records.schema import CaseField

# A field's probabilities: its class leads with this, the others share the rest.
LEADING = 0.94


def answered(class_id: str) -> dict[str, float]:
    rest = (1 - LEADING) / (len(CLASS_IDS) - 1)
    return {c: LEADING if c == class_id else rest for c in CLASS_IDS}


def write_case(
    app: Flask,
    reference: str,
    classes: list[str],
    card: ModelCard | None = None,
    created_by: str = "admin",
    expected: int | None = None,
) -> str:
    """A case whose fields were answered with ``classes``, judged by ``card``'s case rule
    (by default a card without one: every answered malignant field escalates); its id."""
    card = card or ModelCard(name="lenet", version="1.0.0", input_size=224)
    with app.extensions["records"].sessions() as session:
        case = new_case(session, reference, "", card, created_by=created_by)
        case.expected_fields = expected
        for position, class_id in enumerate(classes, start=1):
            case.fields.append(
                CaseField(
                    position=position,
                    filename=f"{position}.jpg",
                    sha256=hashlib.sha256(f"{reference}{position}".encode()).hexdigest(),
                    size_bytes=1,
                    state="answered",
                    class_id=class_id,
                    probabilities=answered(class_id),
                )
            )
        refresh(case)
        session.commit()
        return case.public_id
