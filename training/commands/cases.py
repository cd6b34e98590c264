"""``python -m training cases``: REPORT.md's simulated-case section, recomputed in place."""

from __future__ import annotations

import argparse

from training.commands import options
from training.commands.common import split_of

NAME = "cases"
HELP = "recompute the simulated-case section of models/REPORT.md on the test split, in place"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)
    options.captures(parser, "test")


def run(args: argparse.Namespace) -> int:
    from training.report import write_case_section

    samples = split_of(args, "test")[:: args.every]
    command = "python -m training cases --data-dir DIR" + "".join(
        f" {flag}" for flag in _case_flags(args)
    )
    path = write_case_section(args.models_dir, samples, args.captures, command)
    print(f"replaced the case section of {path}", flush=True)
    return 0


def _case_flags(args: argparse.Namespace) -> list[str]:
    """The options that changed the cases, for the report to name its command."""
    from training.capture import CAPTURES

    flags = [] if args.every == 1 else [f"--every {args.every}"]
    if tuple(args.captures) != tuple(CAPTURES):
        flags.append("--captures " + " ".join(args.captures))
    return flags
