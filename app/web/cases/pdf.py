"""The case report as a PDF made on the server (fpdf2), for the record and for printing."""

from __future__ import annotations

import io
import re

from flask import Response
from fpdf import FPDF

from app.core.case_verdict import CaseVerdict
from app.records.cases import verdict
from app.records.schema import Case, CaseField
from app.web.auth import audit
from app.web.cases.presenter import (
    case_findings,
    case_headline,
    evidence,
    field_label,
    model_display_name,
    people_names,
    review_label,
    rule_text,
)
from app.web.lab_time import lab_time
from app.web.records import commit

DISCLAIMER = (
    "Research decision support, not a diagnosis. Model results must be confirmed by a "
    "qualified haematopathologist (morphology, flow cytometry and clinical context)."
)
# The PDF's built-in fonts hold Latin-1 only: typographic characters are spelled out.
_PLAIN = str.maketrans(
    {"…": "...", "—": "-", "–": "-", "≥": ">=", "≤": "<=", "×": "x", "“": '"', "”": '"', "’": "'"}
)
THUMB_MM = 16.0


def _text(value: str) -> str:
    return value.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


class _Report(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, _text(DISCLAIMER), align="C")
        self.set_y(-8)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")


def case_pdf(case: Case) -> bytes:
    """The case's report: reference, dates, model, both verdicts, every field, the hashes."""
    v = verdict(case)
    pdf = _Report(format="A4")
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_title(_text(f"Case report {case.reference}"))
    pdf.set_creator("B-ALL smear classifier")
    pdf.add_page()
    width = pdf.epw

    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(width, 9, "B-ALL smear classifier: case report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8.5)
    pdf.multi_cell(width, 4.5, _text(DISCLAIMER), border=1, padding=2)
    pdf.ln(2)

    # The record's own last change, not the clock: the same record gives the same PDF, byte
    # for byte (an archived report can be checked against the record it came from).
    as_of = max([case.created_at, *(r.created_at for r in case.reviews)])
    pdf.set_creation_date(as_of)
    names = people_names(case)
    created = lab_time(case.created_at)
    if case.created_by:
        created += f" by {names.get(case.created_by, case.created_by)}"
    facts = [
        ("Case reference", case.reference),
        ("Created", created),
        ("Model", f"{model_display_name(case.model_name)}, version {case.model_version}"),
        ("Case rule", rule_text(case)),
        ("Record as of", lab_time(as_of)),
    ]
    if case.note:
        facts.append(("Note", case.note))
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 9.5)
        pdf.cell(38, 5.5, label)
        pdf.set_font("Helvetica", size=9.5)
        _lines(pdf, width - 38, 5.5, _text(value), new_x="LMARGIN", new_y="NEXT")

    if case.missing_fields:
        pdf.set_font("Helvetica", "B", 9.5)
        _lines(
            pdf,
            width,
            5,
            f"Incomplete: {len(case.fields)} of {case.expected_fields} photographs arrived.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    _heading(pdf, "Model verdict")
    pdf.set_font("Helvetica", "B", 11)
    headline = case_headline(v) + (f": {v.reason}" if v.reason else "")
    _lines(pdf, width, 6, _text(headline), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9.5)
    for line in case_findings(v):
        _lines(pdf, width, 5, _text(f"- {line}"), new_x="LMARGIN", new_y="NEXT")
    if v.n_used:
        _evidence_table(pdf, v)

    _heading(pdf, "Reviewer's verdict")
    pdf.set_font("Helvetica", size=9.5)
    if not case.reviews:
        pdf.cell(
            width,
            5.5,
            "Not reviewed. This report is not signed off.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    for i, r in enumerate(case.reviews, start=1):
        state = "signed off" if r.signed_off else "not signed off"
        corrects = f", corrects review {_number(case, r.supersedes_id)}" if r.supersedes_id else ""
        who = names.get(r.reviewer, r.reviewer) if r.reviewer else "reviewer not recorded"
        line = (
            f"Review {i}: {review_label(r)} ({state}{corrects}), "
            f"{lab_time(r.created_at)}, {who}." + (f' "{r.comment}"' if r.comment else "")
        )
        _lines(pdf, width, 5, _text(line), new_x="LMARGIN", new_y="NEXT")
    if case.reviews and case.signed_off is None:
        pdf.cell(width, 5.5, "Not signed off.", new_x="LMARGIN", new_y="NEXT")

    _heading(pdf, "Fields")
    for item in case.fields:
        _field_row(pdf, item, width)
    return bytes(pdf.output())


def _evidence_table(pdf: FPDF, v: CaseVerdict) -> None:
    """The case page's evidence table: fields per class and the mean probability."""
    pdf.ln(1)
    with pdf.table(
        col_widths=(50, 20, 30), width=100, align="LEFT", text_align=("LEFT", "RIGHT", "RIGHT")
    ) as table:
        table.row(["Class", "Fields", "Mean probability"])
        for e in evidence(v):
            table.row([_text(e.label), str(e.votes), _text(e.text)])


def _lines(pdf: FPDF, width: float, height: float, text: str, new_x: str, new_y: str) -> None:
    """``multi_cell`` for text that wraps, one ``cell`` for text that fits on a line: the same
    on the page, but fpdf2 measures a wrapping line again for every character it adds."""
    if "\n" not in text and pdf.get_string_width(text) <= width - 2 * pdf.c_margin:
        pdf.cell(width, height, text, new_x=new_x, new_y=new_y)
    else:
        pdf.multi_cell(width, height, text, new_x=new_x, new_y=new_y)


def _number(case: Case, review_id: int | None) -> int:
    return next(i for i, r in enumerate(case.reviews, start=1) if r.id == review_id)


def _heading(pdf: FPDF, title: str) -> None:
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11.5)
    pdf.cell(pdf.epw, 7, title, border="B", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)


def _field_row(pdf: FPDF, item: CaseField, width: float) -> None:
    if pdf.will_page_break(THUMB_MM + 2):
        pdf.add_page()
    top = pdf.get_y()
    left = pdf.l_margin
    if item.thumbnail:
        pdf.image(io.BytesIO(item.thumbnail), x=left, y=top, w=THUMB_MM, h=THUMB_MM)
    pdf.set_xy(left + THUMB_MM + 3, top)
    text_width = width - THUMB_MM - 3
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(
        text_width,
        4.5,
        _text(f"Field {item.position}  {item.filename}"),
        new_x="LEFT",
        new_y="NEXT",
    )
    pdf.set_font("Helvetica", size=9)
    _lines(pdf, text_width, 4.5, _text(field_label(item)), new_x="LEFT", new_y="NEXT")
    pdf.set_font("Courier", size=7)
    pdf.cell(text_width, 4, f"sha256 {item.sha256}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + THUMB_MM) + 2)


def exported_pdf(case: Case) -> Response:
    """The PDF as a download named after the case reference, the export audited."""
    response = Response(case_pdf(case), mimetype="application/pdf")
    audit("report_exported", "case", case.public_id, format="pdf")
    commit()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", case.reference).strip("-") or "case"
    response.headers["Content-Disposition"] = f'attachment; filename="case-{name}.pdf"'
    return response
