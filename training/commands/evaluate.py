"""``python -m training evaluate``: score committed models on a labelled folder."""

from __future__ import annotations

import argparse
import json

from training.commands import options
from training.commands.common import selected_models

NAME = "evaluate"
HELP = "score committed models on a labelled folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser)
    parser.add_argument(
        "--split",
        choices=options.SPLITS,
        help="only the images the split manifest puts in this split",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per model")


def run(args: argparse.Namespace) -> int:
    from app.core.model_store import load_model
    from training.data import DataSetError, data_dir_from, discover
    from training.evaluate import evaluate_model, format_table, select_split
    from training.split import MANIFEST_NAME

    samples = discover(data_dir_from(args.data_dir))
    if args.split:
        samples = select_split(samples, args.models_dir / MANIFEST_NAME, args.split)
        if not samples:
            raise DataSetError(f"no image of this folder is in the {args.split} split")
    for name in selected_models(args.models_dir, args.model):
        result = evaluate_model(load_model(args.models_dir, name), samples)
        print(json.dumps(result) if args.json else format_table(result), flush=True)
    return 0
