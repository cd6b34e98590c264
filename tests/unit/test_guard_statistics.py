"""The guard-statistics diagnostic: a subset of the statistics is judged by what it flags."""

from __future__ import annotations

import numpy as np

from training.guard_statistics import (
    N_STATISTICS,
    PROFILE_COLUMNS,
    PROFILED_OFFSETS,
    SUBSETS,
    flag_rates,
    markdown,
)


def test_a_shift_in_the_fine_texture_is_flagged_only_by_the_subsets_that_read_it() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, N_STATISTICS))
    val = rng.normal(size=(200, N_STATISTICS))
    noisy = rng.normal(size=(100, N_STATISTICS))
    noisy[:, PROFILE_COLUMNS[PROFILED_OFFSETS[0]]] += 8.0  # the finest texture, as noise moves it
    recoloured = rng.normal(size=(100, N_STATISTICS))
    recoloured[:, 0] += 8.0  # the mean red
    empty = np.zeros((0, N_STATISTICS))  # a set the scale check refused whole
    sets = {"noisy": noisy, "recoloured": recoloured, "as is": val, "refused": empty}
    result = flag_rates(train, val, sets)
    rates = result.rates
    assert rates["with the texture at 1 and 2 px too"]["noisy"] > 0.9
    assert rates["served: the texture at 4, 8 and 16 px"]["noisy"] < 0.1
    assert rates["without the texture profile"]["noisy"] < 0.1
    for subset in SUBSETS:
        assert rates[subset]["recoloured"] > 0.9
        # Scaled at the guard's validation quantile: a fortieth of validation is flagged.
        assert 0.01 <= rates[subset]["as is"] <= 0.04
    table = markdown(result, ["noisy", "recoloured", "refused"])
    assert table.splitlines()[0] == "| statistics | noisy (100) | recoloured (100) | refused (0) |"
    assert table.splitlines()[2].endswith("| - |")
    # Each share with its Wilson interval: every one of 100 flagged is 100% (96-100).
    recoloured_cell = table.splitlines()[2].split(" | ")[2]
    assert recoloured_cell == "100% (96-100)"
    assert len(table.splitlines()) == 2 + len(SUBSETS)
