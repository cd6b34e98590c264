"""The commands of ``python -m training``, one module each, listed once in
``training.cli.COMMANDS``.

A command module has ``NAME`` (the command's name), ``HELP`` (one line), ``add_arguments``
(its options, on the parser ``training.cli`` gives it) and ``run`` (the exit status). At
import a module loads only light code: the data code and TensorFlow are imported inside
``run``, so the command list and each command's ``--help`` come quickly. To add a command,
write its module here and list it in ``training.cli.COMMANDS``; shared options are in
``options``, shared run-time steps in ``common``.
"""

from __future__ import annotations

import argparse
from typing import Protocol


class Command(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...
