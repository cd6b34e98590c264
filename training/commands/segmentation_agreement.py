"""``python -m training segmentation-agreement``: the app's segmentation against the
data set's masks."""

from __future__ import annotations

import argparse
import json

from training.commands import options

NAME = "segmentation-agreement"
HELP = "IoU of the app's segmentation against the data set's masks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from
    from training.segmentation_eval import agreement, agreement_markdown

    result = agreement(data_dir_from(args.data_dir))
    print(json.dumps(result) if args.json else agreement_markdown(result), flush=True)
    return 0
