"""``python -m training blocks-ensemble``: several models averaged over the held-out blocks."""

from __future__ import annotations

import argparse
import json

from training.commands import options

NAME = "blocks-ensemble"
HELP = "score models averaged together on their saved held-out-block records"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="models whose models/blocks records to combine")
    options.data_dir(parser)
    options.models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from training.block_ensemble import combined_records
    from training.block_results import results
    from training.blocks import summarise
    from training.data import data_dir_from, discover

    saved = results(args.models_dir)
    missing = [m for m in args.models if m not in saved]
    if missing:
        raise SystemExit(f"no saved block records for: {', '.join(missing)}")
    samples = discover(data_dir_from(args.data_dir))
    records = combined_records([saved[m] for m in args.models])
    for role, name in (("val", "validation"), ("test", "held_out")):
        figures = summarise(records, samples, role)
        print(json.dumps({"models": args.models, "blocks": name, **figures}), flush=True)
    return 0
