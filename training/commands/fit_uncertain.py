"""``python -m training fit-uncertain``: fit the 'uncertain' confidence threshold."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import selected_models

NAME = "fit-uncertain"
HELP = "fit the 'uncertain' threshold on validation and its capture variants"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser)


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from, discover
    from training.uncertain import fit_uncertain

    samples = discover(data_dir_from(args.data_dir))
    for name in selected_models(args.models_dir, args.model):
        c = fit_uncertain(args.models_dir, name, samples)
        print(
            f"[{name}] uncertain below {c.uncertain_below}: val {c.uncertain_val_rate:.1%}, "
            f"test {c.uncertain_test_rate:.1%} uncertain; test accuracy when confident "
            f"{c.test_accuracy_when_confident}",
            flush=True,
        )
    return 0
