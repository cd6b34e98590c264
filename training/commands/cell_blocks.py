"""``python -m training cell-blocks``: cross-validate cell models over patient blocks."""

from __future__ import annotations

import argparse
import json
import sys

from training.architectures import CELL_ARCHITECTURES
from training.cell_config import VIEW_COUNTS
from training.commands import options

NAME = "cell-blocks"
HELP = "cross-validate a cell model over blocks of neighbouring files (held-out patients)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=(*CELL_ARCHITECTURES, "all"), default="all")
    options.data_dir(parser)
    options.models_dir(parser)
    parser.add_argument("--folds", type=int, default=5)
    options.cell_recipe(parser)
    parser.add_argument(
        "--views",
        type=int,
        nargs="+",
        choices=VIEW_COUNTS,
        default=[1],
        help="also score each cell as the mean of this many of its flips and quarter turns, "
        "from the same trained folds (2 4 8: models/blocks/<model>.views<N>.json each)",
    )
    parser.add_argument(
        "--train-on-validation",
        action="store_true",
        help="each fold also trains on its validation block, for every epoch (no early "
        "stopping): only held-out figures (models/blocks/<model>.trainval.json)",
    )
    parser.add_argument(
        "--training-blocks",
        type=int,
        default=None,
        help="train each fold on this many blocks, fewer than the protocol's, for a learning "
        "curve on the validation blocks (models/blocks/<model>.train<N>.json)",
    )
    options.cache_dir(parser)


def run(args: argparse.Namespace) -> int:
    from training.architectures import architecture
    from training.blocks import trainable_blocks
    from training.cell_bags import load_bags
    from training.cell_cv import cross_validate_cells
    from training.data import data_dir_from, discover

    most = trainable_blocks(args.folds, not args.train_on_validation)
    if args.training_blocks is not None and not 1 <= args.training_blocks <= most:
        print(f"--training-blocks must be 1 to {most} with {args.folds} folds", file=sys.stderr)
        return 2
    samples = discover(data_dir_from(args.data_dir))
    bags = load_bags(samples, args.cache_dir)
    names = list(CELL_ARCHITECTURES) if args.model == "all" else [args.model]
    for name in names:
        config = options.cell_config(args, name, architecture(name).learning_rate)
        for result in cross_validate_cells(
            samples,
            bags,
            config,
            args.folds,
            args.views,
            args.train_on_validation,
            args.training_blocks,
        ):
            path = result.save(args.models_dir, samples)
            summary = json.loads(path.read_text())
            print(
                json.dumps(
                    {
                        "model": name,
                        "views": result.views,
                        "held_out": summary["held_out"],
                        "validation": summary["validation"],
                    }
                ),
                flush=True,
            )
    return 0
