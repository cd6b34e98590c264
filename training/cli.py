"""Retrain, evaluate and report on the models: python -m training COMMAND [options]
(python -m training COMMAND --help for a command's options).

Results (tables, JSON lines) go to stdout; progress and status go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TextIO

from training.commands import (
    Command,
    blocks_ensemble,
    blocks_report,
    capture,
    cases,
    cell_blocks,
    cell_detection,
    evaluate,
    export_labels,
    field_blocks,
    fit_case,
    fit_heat,
    fit_ood,
    fit_scale,
    fit_uncertain,
    guard_statistics,
    heat,
    heat_warning,
    patient_proxy,
    report,
    resplit,
    segmentation_agreement,
    set_views,
    stain_robustness,
    train,
    train_cells,
    upgrade_cards,
)

# The registry: every command, in the order ``python -m training --help`` lists them.
COMMANDS: tuple[Command, ...] = (
    train,
    evaluate,
    report,
    capture,
    patient_proxy,
    segmentation_agreement,
    set_views,
    fit_ood,
    fit_uncertain,
    guard_statistics,
    heat,
    fit_heat,
    heat_warning,
    fit_scale,
    fit_case,
    cases,
    resplit,
    upgrade_cards,
    cell_blocks,
    field_blocks,
    blocks_report,
    blocks_ensemble,
    stain_robustness,
    train_cells,
    export_labels,
    cell_detection,
)
BY_NAME: dict[str, Command] = {command.NAME: command for command in COMMANDS}

log = logging.getLogger("training")


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (tests capture it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


_handler = _StderrHandler()
_handler.setFormatter(logging.Formatter("%(message)s"))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line with every command's name and help, and the options of ``command``
    alone (building one command's options may import what its choices are read from)."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for each in COMMANDS:
        sub_parser = sub.add_parser(each.NAME, help=each.HELP, description=each.HELP)
        if each.NAME == command:
            each.add_arguments(sub_parser)
    return parser


def _configure_logging() -> None:
    """Status lines of every ``training`` module go to stderr."""
    if _handler not in log.handlers:
        log.addHandler(_handler)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The command is the first argument: the dispatcher itself takes no option but --help.
    command = argv[0] if argv and argv[0] in BY_NAME else None
    args = build_parser(command).parse_args(argv)
    _configure_logging()
    from app.core.model_card import ModelCardError
    from training.data import DataSetError

    try:
        return BY_NAME[args.command].run(args)
    except (DataSetError, ModelCardError, FileNotFoundError) as exc:
        log.error("error: %s", exc)
        return 2
