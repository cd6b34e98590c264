"""``python -m training capture``: the capture-robustness suite."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import split_of

NAME = "capture"
HELP = "the capture-robustness suite: accuracy, coverage, silent errors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)
    parser.add_argument("--split", choices=options.SPLITS, default="val")
    parser.add_argument("--every", type=int, default=1, help="take every N-th image (default 1)")
    parser.add_argument(
        "--update-report",
        action="store_true",
        help="also replace the capture section of REPORT.md in the models folder "
        "(with --split test; every other section is left as it was)",
    )


def run(args: argparse.Namespace) -> int:
    from training.report import capture_sections, write_capture_section

    if args.update_report and args.split != "test":
        raise SystemExit("--update-report writes the report's test-split section: use --split test")
    samples = split_of(args, args.split)[:: args.every]
    every = f" --every {args.every}" if args.every != 1 else ""
    update = " --update-report" if args.update_report else ""
    command = f"python -m training capture --data-dir DIR --split {args.split}{every}{update}"
    if not args.update_report:
        captures, cases = capture_sections(args.models_dir, samples, args.split, command)
        print(captures, cases, sep="\n", flush=True)
        return 0
    path, captures, cases = write_capture_section(args.models_dir, samples, command)
    print(captures, cases, sep="\n", flush=True)
    print(f"replaced the capture section of {path} (not the case section)", flush=True)
    return 0
