"""``python -m training field-blocks``: whole-field models over the same patient blocks."""

from __future__ import annotations

import argparse
import json

from training.architectures import FIELD_ARCHITECTURES
from training.commands import options

NAME = "field-blocks"
HELP = "cross-validate a whole-field model over the same blocks, for comparison"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=options.MODEL_CHOICES, default="all")
    options.data_dir(parser)
    options.models_dir(parser)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from, discover
    from training.field_blocks import cross_validate_field
    from training.train import TrainConfig

    samples = discover(data_dir_from(args.data_dir))
    names = list(FIELD_ARCHITECTURES) if args.model == "all" else [args.model]
    for name in names:
        arch = FIELD_ARCHITECTURES[name]
        config = TrainConfig(
            model=name,
            epochs=args.epochs,
            seed=args.seed,
            learning_rate=arch.learning_rate,
            dropout=arch.dropout,
        )
        result = cross_validate_field(samples, config, arch.input_size, args.folds)
        path = result.save(args.models_dir, samples)
        summary = json.loads(path.read_text())
        print(json.dumps({"model": name, "held_out": summary["held_out"]}), flush=True)
    return 0
