"""``python -m training report``: write models/REPORT.md from the test split."""

from __future__ import annotations

import argparse

from training.commands import options

NAME = "report"
HELP = "write models/REPORT.md from the test split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from
    from training.report import write_report

    path = write_report(data_dir_from(args.data_dir), args.models_dir)
    print(f"wrote {path}")
    return 0
