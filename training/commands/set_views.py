"""``python -m training set-views``: change a trained model's test-time views."""

from __future__ import annotations

import argparse

from app.core.model_card import VIEW_DESCRIPTIONS
from training.architectures import ARCHITECTURES
from training.commands import options
from training.commands.common import selected_models

NAME = "set-views"
HELP = "change a trained model's test-time views, then recalibrate, rescore and refit its OOD guard"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    parser.add_argument("--model", choices=(*ARCHITECTURES, "all"), required=True)
    options.models_dir(parser)
    parser.add_argument(
        "--views",
        type=int,
        choices=tuple(VIEW_DESCRIPTIONS),
        required=True,
        help="; ".join(f"{k}: {v}" for k, v in VIEW_DESCRIPTIONS.items()),
    )
    options.cache_dir(parser)


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from, discover
    from training.set_views import set_views

    data_dir = data_dir_from(args.data_dir)
    samples = discover(data_dir)
    for name in selected_models(args.models_dir, args.model, unit=None):
        card = set_views(
            args.models_dir, name, args.views, data_dir, samples=samples, cache_dir=args.cache_dir
        )
        test = card.test_metrics
        assert test is not None  # set_views has just scored it
        print(
            f"[{name}] {args.views} view(s), version {card.version}: test accuracy "
            f"{test.accuracy:.4f}, macro-F1 {test.macro_f1:.4f}",
            flush=True,
        )
    return 0
