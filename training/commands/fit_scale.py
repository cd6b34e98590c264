"""``python -m training fit-scale``: the training photographs' cell scale, into the cards."""

from __future__ import annotations

import argparse

from app.core.model_card import ModelCard
from app.core.model_files import model_files
from training.commands import options
from training.commands.common import selected_models, split_of

NAME = "fit-scale"
HELP = "measure the training photographs' cell scale and write it into the model cards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.every_model(parser)


def run(args: argparse.Namespace) -> int:
    from app.core.preprocessing import SCALED_RESIZE
    from training.data import DataSetError
    from training.scale_fit import fit_scale

    spec = fit_scale(split_of(args, "train"))
    if spec is None:
        raise DataSetError("most training images could not be measured")
    for name in selected_models(args.models_dir, args.model):
        path = model_files(args.models_dir, name).card
        card = ModelCard.load(path)
        if card.scale != spec:
            card.scale = spec
            card.preprocessing["resize"] = SCALED_RESIZE
            major, minor, patch = card.version.split(".")
            card.version = f"{major}.{minor}.{int(patch) + 1}"
            card.save(path)
        print(
            f"[{name}] version {card.version}: cells {spec.reference_px:.1f} px "
            f"(95% within {spec.low_px:.1f}-{spec.high_px:.1f}) in a {spec.field_px} px field",
            flush=True,
        )
    return 0
