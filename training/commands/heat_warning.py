"""``python -m training heat-warning``: how often the background warning fires."""

from __future__ import annotations

import argparse
import logging

from training.commands import options
from training.commands.common import split_of

NAME = "heat-warning"
HELP = "how often the background warning fires on correct and wrong test answers"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)
    parser.add_argument(
        "--update-report",
        action="store_true",
        help="also replace this section of REPORT.md in the models folder",
    )


def run(args: argparse.Namespace) -> int:
    from training.report import heat_warning_section, write_heat_warning_section

    samples = split_of(args, "test")
    if not args.update_report:
        print(heat_warning_section(args.models_dir, samples), flush=True)
        return 0
    path, section = write_heat_warning_section(args.models_dir, samples)
    print(section, flush=True)
    log.info("updated %s", path)
    return 0
