"""The Markdown table helper the reports share."""

from __future__ import annotations

import pytest

from training.markdown import table


def test_table_with_header_separator_and_rows() -> None:
    text = table(["model", "accuracy"], [["LeNet", "98%"], ["VGG", 0.5]], align=["left", "right"])
    assert text.splitlines() == [
        "| model | accuracy |",
        "|---|---:|",
        "| LeNet | 98% |",
        "| VGG | 0.5 |",
    ]


def test_rows_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ValueError, match="a row has 1 cells, the header 2"):
        table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="1 alignments for 2 columns"):
        table(["a", "b"], [], align=["left"])
