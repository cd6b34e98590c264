"""``python -m training upgrade-cards``: every model card rewritten in the current format."""

from __future__ import annotations

import argparse

from app.core.model_card import ModelCard
from app.core.model_files import model_files
from training.commands import options
from training.commands.common import selected_models

NAME = "upgrade-cards"
HELP = (
    "rewrite every model card in the current format "
    "(same figures; fields missing get their default)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.models_dir(parser)


def run(args: argparse.Namespace) -> int:
    for name in selected_models(args.models_dir, "all", unit=None):
        path = model_files(args.models_dir, name).card
        before = path.read_text()
        card = ModelCard.load(path)
        if card.to_json() != before:
            card.save(path)
            print(f"[{name}] card rewritten in the current format", flush=True)
        else:
            print(f"[{name}] card already current", flush=True)
    return 0
