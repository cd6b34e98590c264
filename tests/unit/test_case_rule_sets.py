"""The report names how many capture sets each case rule was fitted on."""

from __future__ import annotations

from training.case_eval import _fitted_sets, _method


def test_the_sets_column_reads_the_rule_method_it_was_fitted_by() -> None:
    assert _fitted_sets(_method(16, 49, 1, True, 200)) == "1"
    assert _fitted_sets(_method(16, 882, 18, False, 200)) == "18"


def test_a_rule_whose_method_does_not_say_is_shown_as_unknown() -> None:
    assert _fitted_sets("chosen by hand") == "?"
