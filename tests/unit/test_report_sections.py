"""A full report keeps the sections other commands write into REPORT.md: the held-out
patients first (``blocks-report``), greyscale and stain-swapped photographs last
(``stain-robustness``); a full report used to drop both."""

from __future__ import annotations

from training.report import BLOCKS_HEADING, STAIN_HEADING, keep_sections
from training.stain_robustness import Outcome, markdown

RENDERED = "# Model report\n\nGenerated today.\n\n## The paper's comparison\n\nnew table\n"


def _headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("## ")]


def test_a_full_report_keeps_the_held_out_patients_first_and_the_stain_section_last() -> None:
    stain = markdown({"lenet": {"greyscale": Outcome(4, 0, 0, 0)}}, {"lenet": "LeNet-5"})
    assert stain.startswith(STAIN_HEADING)
    old = (
        f"# Model report\n\nGenerated before.\n\n{BLOCKS_HEADING}\n\nblock figures\n\n"
        f"## The paper's comparison\n\nold table\n\n{stain}\n"
    )
    kept = keep_sections(old, RENDERED)
    assert _headings(kept) == [BLOCKS_HEADING, "## The paper's comparison", STAIN_HEADING]
    assert "block figures" in kept
    assert "new table" in kept
    assert "old table" not in kept
    assert "Generated today." in kept
    assert kept.count("LeNet-5") == stain.count("LeNet-5")
    # Run again on its own output, nothing moves.
    assert keep_sections(kept, RENDERED) == kept


def test_a_first_report_has_nothing_to_keep() -> None:
    assert keep_sections("", RENDERED) == RENDERED
