"""The dates and page of a search form's query string (the case history, the audit trail)."""

from __future__ import annotations

from datetime import date

from werkzeug.datastructures import MultiDict

from app.records.cases import CaseInputError


def dates_and_page(args: MultiDict[str, str]) -> tuple[date | None, date | None, int]:
    """``from`` and ``to`` (YYYY-MM-DD, optional) and ``page`` (from 1); CaseInputError else,
    and for a NUL character in any term (PostgreSQL cannot compare text holding one)."""
    if any("\x00" in text for item in args.items(multi=True) for text in item):
        raise CaseInputError("A search term holds a NUL character; search for what you can type.")
    try:
        since = date.fromisoformat(args["from"]) if args.get("from") else None
        until = date.fromisoformat(args["to"]) if args.get("to") else None
        page = int(args.get("page", "1"))
    except ValueError:
        raise CaseInputError("Dates are written YYYY-MM-DD and the page is a number.") from None
    return since, until, max(1, page)
