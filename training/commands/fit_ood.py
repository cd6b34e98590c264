"""``python -m training fit-ood``: fit the out-of-distribution guard."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import card, selected_models

NAME = "fit-ood"
HELP = "fit the OOD guard (and a field model's 'uncertain' confidence)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser, cells=True)
    options.cache_dir(parser)


def run(args: argparse.Namespace) -> int:
    from training.cell_train import refit_cell_guard
    from training.data import data_dir_from, discover
    from training.ood import fit_ood

    data_dir = data_dir_from(args.data_dir)
    samples = discover(data_dir)
    for name in selected_models(args.models_dir, args.model, unit=None):
        if card(args.models_dir, name).unit == "cell":
            section = refit_cell_guard(
                args.models_dir, name, data_dir, args.cache_dir, samples=samples
            )
        else:
            section = fit_ood(args.models_dir, name, data_dir, samples=samples)
        print(
            f"[{name}] threshold {section.threshold:.3f}: flags val "
            f"{section.val_flag_rate:.1%}, test {section.test_flag_rate:.1%}, "
            f"foreign {section.foreign_flag_rate:.1%}",
            flush=True,
        )
    return 0
