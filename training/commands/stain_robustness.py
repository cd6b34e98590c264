"""``python -m training stain-robustness``: the served models on greyscale and
stain-swapped test photographs."""

from __future__ import annotations

import argparse

from training.commands import options

NAME = "stain-robustness"
HELP = "accuracy of the served models on greyscale and stain-swapped test photographs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)
    parser.add_argument(
        "--update-report", action="store_true", help="replace the section in REPORT.md"
    )


def run(args: argparse.Namespace) -> int:
    from app.core.service import InferenceService
    from training import stain_robustness
    from training.data import data_dir_from, discover
    from training.evaluate import select_split
    from training.split import MANIFEST_NAME

    samples = discover(data_dir_from(args.data_dir))
    manifest = args.models_dir / MANIFEST_NAME
    test = select_split(samples, manifest, "test")
    train = select_split(samples, manifest, "train")
    service = InferenceService(args.models_dir).load()
    result = stain_robustness.measure(service, test, train)
    display = {card.name: card.display_name for card in service.models()}
    section = stain_robustness.markdown(result, display)
    if args.update_report:
        stain_robustness.write(args.models_dir / "REPORT.md", section)
    print(section, flush=True)
    return 0
