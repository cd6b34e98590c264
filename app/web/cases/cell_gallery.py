"""A cell model's case in the pages and the API: its leukocytes by class, the differential
before and after review, and a reviewer's reclassification with its audit event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import url_for

from app.core.classes import CLASS_IDS, DISPLAY_NAMES, MALIGNANT
from app.records.cases import (
    CellCounts,
    ClassifiedCell,
    Reclassified,
    cell_counts,
    classified_cells,
    reclassify_cell,
)
from app.records.schema import Case, CaseField
from app.web.analysis.presenter import percent
from app.web.auth import actor, audit
from app.web.records import db

# The classes as a cell's class control names them, short enough for a phone's column.
SHORT_NAMES = {"benign": "Benign", "early_pre_b": "Early Pre-B", "pre_b": "Pre-B", "pro_b": "Pro-B"}


@dataclass(frozen=True)
class CellView:
    """One leukocyte in the gallery: where it is, its class (the reviewer's once given) and
    the model's reading of it."""

    id: int
    position: int
    index: int
    shown_class: str
    model_class: str
    # The model's probability of its own class, in words.
    model_probability: str
    uncertain: bool
    reviewed: bool
    reviewed_by: str | None

    @property
    def label(self) -> str:
        return DISPLAY_NAMES[self.shown_class]

    @property
    def model_label(self) -> str:
        return DISPLAY_NAMES[self.model_class]

    @property
    def changed(self) -> bool:
        return self.shown_class != self.model_class

    @property
    def name(self) -> str:
        """The cell's name for people and screen readers."""
        return f"Field {self.position}, cell {self.index}"


@dataclass(frozen=True)
class ClassGroup:
    """The gallery's cells of one class, with their share of all the case's cells."""

    class_id: str
    label: str
    malignant: bool
    cells: list[CellView]
    share: str


@dataclass(frozen=True)
class DifferentialRow:
    """One class of the differential: the model's count and the count after review."""

    class_id: str
    label: str
    model: int
    model_share: str
    reviewed: int
    reviewed_share: str

    @property
    def changed(self) -> bool:
        return self.model != self.reviewed


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.0f}%" if total else "n/a"


def cell_view(position: int, cell: ClassifiedCell) -> CellView:
    model_class = str(cell.class_id)
    return CellView(
        id=cell.id,
        position=position,
        index=cell.index,
        shown_class=str(cell.shown_class),
        model_class=model_class,
        model_probability=percent((cell.probabilities or {}).get(model_class, 0.0)),
        uncertain=cell.status == "uncertain",
        reviewed=cell.reviewed_class is not None,
        reviewed_by=cell.reviewed_by,
    )


def case_cells(case: Case) -> tuple[list[CellView], CellCounts]:
    """Every cell the case's cell model read, in field and cell order, and their counts
    (no cells for a case of a model that reads whole fields)."""
    rows = classified_cells(db(), case)
    return [cell_view(position, cell) for position, cell in rows], cell_counts(
        [cell for _, cell in rows]
    )


def differential(counts: CellCounts) -> list[DifferentialRow]:
    """The differential per class, in the fixed class order."""
    return [
        DifferentialRow(
            class_id=c,
            label=DISPLAY_NAMES[c],
            model=counts.model[c],
            model_share=_share(counts.model[c], counts.total),
            reviewed=counts.reviewed[c],
            reviewed_share=_share(counts.reviewed[c], counts.total),
        )
        for c in CLASS_IDS
    ]


def class_groups(cells: list[CellView]) -> list[ClassGroup]:
    """The cells by class (the reviewer's where given), in the fixed class order; a class
    without cells has no group."""
    groups = []
    for c in CLASS_IDS:
        members = [cell for cell in cells if cell.shown_class == c]
        if members:
            groups.append(
                ClassGroup(
                    class_id=c,
                    label=DISPLAY_NAMES[c],
                    malignant=MALIGNANT[c],
                    cells=members,
                    share=_share(len(members), len(cells)),
                )
            )
    return groups


def next_in_group(cells: list[CellView], cell_id: int) -> int | None:
    """The cell after ``cell_id`` among those of its class (before it, when it is the last):
    where a reviewer goes on once it has moved to another class."""
    here = next((c for c in cells if c.id == cell_id), None)
    if here is None:
        return None
    group = [c for c in cells if c.shown_class == here.shown_class]
    at = group.index(here)
    rest = group[at + 1 :] or group[:at][-1:]
    return rest[0].id if rest else None


def save_reclassification(case: Case, cell_id: int, class_id: str | None) -> Reclassified | None:
    """Record the signed-in reviewer's class for a cell and commit it with its audit event;
    None (and no event) when they had already given it that class."""
    done = reclassify_cell(db(), case, cell_id, class_id, actor())
    if done is None:
        return None
    audit(
        "cell_reclassified",
        "case",
        case.public_id,
        field=done.position,
        cell=done.cell.index,
        cell_id=done.cell.id,
        model_class=done.cell.class_id,
        **{"from": done.before, "to": done.after},
    )
    db().commit()
    return done


def reclassified_message(done: Reclassified | None, cells: list[CellView]) -> str:
    """What the page says after a reclassification, with the new count of its class."""
    if done is None:
        return "The cell already had that class: nothing changed."
    total = len(cells)
    now = sum(1 for c in cells if c.shown_class == done.after)
    return (
        f"Field {done.position}, cell {done.cell.index}: {DISPLAY_NAMES[done.before]} → "
        f"{DISPLAY_NAMES[done.after]}. {DISPLAY_NAMES[done.after]} now {now} of {total} cells."
    )


def cell_json(cell: ClassifiedCell, image_url: str) -> dict[str, Any]:
    """A cell of a case: the model's reading (as a single prediction gives it) and the
    reviewer's class."""
    return {
        "id": cell.id,
        "index": cell.index,
        "box": list(cell.box),
        "class": cell.class_id,
        "label": DISPLAY_NAMES[str(cell.class_id)],
        "probabilities": cell.probabilities,
        "attention": cell.attention,
        "status": cell.status,
        "reviewed_class": cell.reviewed_class,
        "reviewed_by": cell.reviewed_by,
        "reviewed_at": None if cell.reviewed_at is None else cell.reviewed_at.isoformat(),
        "image_url": image_url,
    }


# A crop id that marks where the id goes in the URL built with it.
_MARKER = 9_876_543_210


def cell_image_urls(case: Case) -> Callable[[int], str]:
    """The URL of the case's crop with a given id, as ``url_for`` builds it: built once for
    the case, not once a cell (a case's JSON holds hundreds)."""
    built = url_for("cases.cell", public_id=case.public_id, crop_id=_MARKER)
    head, tail = built.rsplit(str(_MARKER), 1)  # the crop id comes after the case id
    return lambda crop_id: f"{head}{int(crop_id)}{tail}"


def counts_json(counts: CellCounts) -> dict[str, Any]:
    return {
        "model": counts.model,
        "reviewed": counts.reviewed,
        "cells": counts.total,
        "reviewed_cells": counts.n_reviewed,
    }


def cells_json(case: Case) -> tuple[dict[int, dict[str, Any]], dict[str, Any] | None]:
    """Each cell model's field's cells and counts by position, and the case's counts (None
    when no model read its cells)."""
    rows = classified_cells(db(), case)
    image_url = cell_image_urls(case)
    by_field: dict[int, list[ClassifiedCell]] = {}
    for position, cell in rows:
        by_field.setdefault(position, []).append(cell)
    fields = {
        item.position: {
            "cells": [cell_json(c, image_url(c.id)) for c in by_field.get(item.position, [])],
            "cell_counts": counts_json(cell_counts(by_field.get(item.position, []))),
        }
        for item in case.fields
        if is_cell_field(item)
    }
    whole = counts_json(cell_counts([c for _, c in rows])) if fields else None
    return fields, whole


def is_cell_field(item: CaseField) -> bool:
    """Whether a cell model read the field (its checks hold its differential)."""
    return isinstance((item.checks or {}).get("cells"), dict)
