"""Markdown tables for the reports, so no report counts its own column separators."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

ALIGNMENTS = {"left": "---", "right": "---:", "center": ":---:"}


def table(
    header: Sequence[str], rows: Iterable[Sequence[object]], align: Sequence[str] | None = None
) -> str:
    """A Markdown table; ``align`` gives each column's alignment (default: left)."""
    width = len(header)
    align = list(align) if align is not None else ["left"] * width
    if len(align) != width:
        raise ValueError(f"{len(align)} alignments for {width} columns")
    lines = [_row(header), "|" + "|".join(ALIGNMENTS[a] for a in align) + "|"]
    for row in rows:
        if len(row) != width:
            raise ValueError(f"a row has {len(row)} cells, the header {width}: {row!r}")
        lines.append(_row([str(cell) for cell in row]))
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
