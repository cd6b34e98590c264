"""``python -m training fit-heat``: fit the 'rests on the background' warning."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import percent, selected_models, split_of

NAME = "fit-heat"
HELP = "fit the 'rests on the background' warning's density threshold on validation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser)


def run(args: argparse.Namespace) -> int:
    from app.core.service import InferenceService
    from training.heat_eval import fit_heat_rule, save_heat_rule, served_answers

    names = selected_models(args.models_dir, args.model)
    samples = split_of(args, "val")
    service = InferenceService(args.models_dir, default_model=names[0]).load()
    for name in names:
        rule = fit_heat_rule(served_answers(service, name, samples))
        save_heat_rule(args.models_dir, name, rule)
        print(
            f"[{name}] warn below density {rule.min_density}: fires on "
            f"{percent(rule.val_fires_on_correct)} of {rule.val_correct} correct and "
            f"{percent(rule.val_fires_on_wrong)} of {rule.val_wrong} wrong confident "
            f"validation answers; {rule.val_no_cells} without cells",
            flush=True,
        )
    return 0
