"""``python -m training blocks-report``: REPORT.md's held-out-patient section and the
cards' patient_blocks."""

from __future__ import annotations

import argparse
import logging

from training.commands import options

NAME = "blocks-report"
HELP = "write the held-out-patient section of REPORT.md and the cards' patient_blocks"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.models_dir(parser)
    # No $ALL_DATA_DIR fallback: without a folder the neighbour check is skipped.
    parser.add_argument(
        "--data-dir", help="also check that neighbouring files look alike (a data set folder)"
    )


def run(args: argparse.Namespace) -> int:
    from training.blocks_report import blocks_markdown, write_blocks_report, write_neighbours
    from training.data import discover

    if args.data_dir:
        write_neighbours(discover(args.data_dir), args.models_dir)
    updated = write_blocks_report(args.models_dir)
    print(blocks_markdown(args.models_dir), flush=True)
    log.info("cards updated: %s", ", ".join(updated) or "none")
    return 0
