"""``python -m training train-cells``: train a cell model on the committed split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.core.model_card import VIEW_DESCRIPTIONS
from training.architectures import CELL_ARCHITECTURES
from training.commands import options

NAME = "train-cells"
HELP = "train a cell model on the committed split and write its card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=tuple(CELL_ARCHITECTURES), required=True)
    options.data_dir(parser)
    options.models_dir(parser, "--out")
    options.cell_recipe(parser)
    options.cache_dir(parser)
    parser.add_argument(
        "--extra-labels", type=Path, help="an export-labels folder: reviewed cells to train on"
    )
    parser.add_argument(
        "--views",
        type=int,
        choices=tuple(VIEW_DESCRIPTIONS),
        default=1,
        help="the served model scores each crop as the mean of this many of its orientations: "
        + "; ".join(f"{k}: {v}" for k, v in VIEW_DESCRIPTIONS.items()),
    )


def run(args: argparse.Namespace) -> int:
    from training.architectures import architecture
    from training.cell_train import train_cells
    from training.data import data_dir_from

    config = options.cell_config(args, args.model, architecture(args.model).learning_rate)
    card = train_cells(
        config,
        data_dir_from(args.data_dir),
        args.out,
        args.cache_dir,
        args.extra_labels,
        args.views,
    )
    metrics = card.test_metrics
    print(
        json.dumps(
            {
                "model": card.name,
                "test_accuracy": None if metrics is None else metrics.accuracy,
                "temperature": card.calibration.temperature,
                "uncertain_below": card.calibration.uncertain_below,
            }
        ),
        flush=True,
    )
    return 0
