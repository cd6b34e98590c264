"""The saved cross-validations over patient blocks, and which of them stands for a model.

``models/blocks/<model>.json`` is the protocol's run (three training blocks, early stopping
on the validation block). ``<model>.train<N>.json`` trains on fewer blocks, for a learning
curve read on the validation blocks; ``<model>.trainval.json`` refits each fold on all four
of its blocks. The refit stands for the model only when the learning curve shows on
validation that the last training block gains more than one run differs from the next.
A run's folds scored in N orientations of each image are saved beside it as
``<model>.views<N>...``; the runs that stand for a model are those in the views its card
serves, where they were saved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.core.model_card import ModelCard
from app.core.model_files import model_files
from training.architectures import ARCHITECTURES
from training.paths import BLOCKS_RESULTS

# How much one run's validation-block accuracy differs from the next of the same recipe
# (docs/decisions.md): a learning curve must gain more than this to count.
RUN_NOISE = 0.006

Results = dict[str, dict[str, Any]]


def run_stem(name: str, views: int = 1) -> str:
    """The start of a run's file name: ``<model>``, or ``<model>.views<N>`` when each image
    was scored as the mean of N of its orientations."""
    return name if views == 1 else f"{name}.views{views}"


def served_views(models_dir: Path, name: str) -> int:
    """How many orientations of each image ``name``'s card averages (1 without a card)."""
    card = model_files(models_dir, name).card
    return ModelCard.load(card).views if card.is_file() else 1


def _stems(models_dir: Path, name: str, served: bool) -> list[str]:
    """The file stems to look for, best first: the served views', then one view's."""
    views = served_views(models_dir, name) if served else 1
    return list(dict.fromkeys([run_stem(name, views), run_stem(name)]))


def protocol_run(models_dir: Path, name: str, served: bool = True) -> dict[str, Any] | None:
    """``name``'s protocol run: scored in the views its card serves where that scoring was
    saved, else in one view (``served=False``: in one view); None when it was not run."""
    folder = models_dir / BLOCKS_RESULTS
    for stem in _stems(models_dir, name, served):
        path = folder / f"{stem}.json"
        if path.is_file():
            run: dict[str, Any] = json.loads(path.read_text())
            return run
    return None


def results(models_dir: Path, served: bool = True) -> Results:
    """Every model's protocol run (``protocol_run``), by model name, in the registry's
    order."""
    found: Results = {}
    for name in ARCHITECTURES:
        run = protocol_run(models_dir, name, served)
        if run is not None:
            found[name] = run
    return found


def runs(models_dir: Path, pattern: str) -> list[dict[str, Any]]:
    """The saved runs of registered models whose file names match ``pattern``, by name."""
    found = sorted((models_dir / BLOCKS_RESULTS).glob(pattern))
    loaded = (json.loads(p.read_text()) for p in found)
    return [d for d in loaded if d["model"] in ARCHITECTURES]


def fewer_blocks(models_dir: Path, name: str) -> list[dict[str, Any]]:
    """``name``'s one-view runs on fewer training blocks, fewest first."""
    found = [d for d in runs(models_dir, f"{name}.train[0-9]*.json") if d["views"] == 1]
    return sorted(found, key=lambda d: int(d["training_blocks"]))


def one_block_fewer(
    models_dir: Path, name: str, full: dict[str, Any] | None
) -> dict[str, Any] | None:
    """``name``'s run on one training block fewer than its protocol's one-view run ``full``,
    when both were run."""
    if full is None:
        return None
    smaller = [d for d in fewer_blocks(models_dir, name) if d["training_blocks"] == full["k"] - 3]
    return smaller[0] if smaller else None


def learning_curve_gain(models_dir: Path, name: str) -> float | None:
    """How much more of the validation fields ``name`` reads right with its protocol's
    training blocks than with one block fewer, both in one view (what training on more
    patients gains, not the views); None when either run is missing."""
    full = protocol_run(models_dir, name, served=False)
    smaller = one_block_fewer(models_dir, name, full)
    return None if full is None or smaller is None else gain_over(full, smaller)


def gain_over(full: dict[str, Any], smaller: dict[str, Any]) -> float:
    """The validation accuracy ``full`` gains over the run on one block fewer."""
    return float(full["validation"]["accuracy"] - smaller["validation"]["accuracy"])


def refit(models_dir: Path, name: str) -> dict[str, Any] | None:
    """``name``'s folds refit on all their four blocks (in its served views where saved),
    when its learning curve gains more than ``RUN_NOISE`` on validation: nested
    cross-validation's last step, which then stands as the model's estimate. None
    otherwise."""
    gain = learning_curve_gain(models_dir, name)
    if gain is None or gain <= RUN_NOISE:
        return None
    return refit_run(models_dir, name)


def refit_run(models_dir: Path, name: str) -> dict[str, Any] | None:
    """``name``'s saved refit on all four blocks, in its served views where saved, else in
    one view, whether or not it stands."""
    for stem in _stems(models_dir, name, served=True):
        found = runs(models_dir, f"{stem}.trainval.json")
        if found:
            return found[0]
    return None


def standing(models_dir: Path, name: str, data: Results | None = None) -> dict[str, Any] | None:
    """The run whose held-out figures stand for ``name``: its refit where the learning
    curve lets it, else its protocol run; None when neither was saved. ``data``: the
    protocol runs when the caller has read them already (``results``)."""
    data = results(models_dir) if data is None else data
    if name not in data:
        return None
    return refit(models_dir, name) or data[name]
