"""``python -m training train``: train whole-field models and write their artifacts."""

from __future__ import annotations

import argparse

from training.architectures import FIELD_ARCHITECTURES
from training.commands import options

NAME = "train"
HELP = "train a model and write its artifacts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=options.MODEL_CHOICES, required=True)
    options.data_dir(parser)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    options.models_dir(parser, "--out")
    parser.add_argument(
        "--learning-rate", type=float, help="peak learning rate (default: the architecture's own)"
    )
    parser.add_argument(
        "--dropout",
        type=options.probability,
        metavar="RATE",
        help="dropout rate of the dense layers (default: the architecture's own)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=options.probability,
        default=0.0,
        metavar="E",
        help="label smoothing of the loss (default: 0, none)",
    )
    parser.add_argument(
        "--background-swap",
        type=options.probability,
        metavar="P",
        help="share of training images given another image's background "
        "(default: the architecture's own, 0)",
    )


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from, discover
    from training.train import TrainConfig, augmentation_for, train

    data_dir = data_dir_from(args.data_dir)
    samples = discover(data_dir)
    names = list(FIELD_ARCHITECTURES) if args.model == "all" else [args.model]
    for name in names:
        config = TrainConfig(
            model=name,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            learning_rate=args.learning_rate or FIELD_ARCHITECTURES[name].learning_rate,
            label_smoothing=args.label_smoothing,
            dropout=args.dropout,
        )
        overrides = (
            {} if args.background_swap is None else {"background_swap_p": args.background_swap}
        )
        train(
            config,
            data_dir,
            args.out,
            samples=samples,
            augmentation=augmentation_for(name, **overrides),
        )
    return 0
