"""``python -m training heat``: where the models look (Grad-CAM heat on the leukocytes)."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import selected_models, split_of

NAME = "heat"
HELP = "where the models look: Grad-CAM heat on the leukocytes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser)
    parser.add_argument("--split", choices=options.SPLITS, default="val")
    parser.add_argument("--per-class", type=int, default=10, help="images per class (default 10)")
    parser.add_argument("--layer", help="explain at this layer instead of the automatic choice")


def run(args: argparse.Namespace) -> int:
    from app.core.model_store import load_model
    from training.heat_eval import heat_markdown, measure

    samples = split_of(args, args.split)
    names = selected_models(args.models_dir, args.model)
    models = [load_model(args.models_dir, n) for n in names]
    results = measure(models, samples, args.per_class, layer=args.layer)
    print(heat_markdown(results, args.split, args.per_class), flush=True)
    return 0
