"""``python -m training guard-statistics``: which of the guard's image statistics flag which
variants and foreign images, on validation photographs."""

from __future__ import annotations

import argparse

from training.commands import options

NAME = "guard-statistics"
HELP = "which of the guard's image statistics flag which variants and foreign images (validation)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)
    parser.add_argument("--model", default="lenet", help="whose scale check prepares the fields")
    parser.add_argument(
        "--images", type=int, default=120, help="validation photographs to vary (seeded)"
    )
    parser.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from app.core.model_card import ModelCard
    from app.core.model_files import model_files
    from training import guard_statistics
    from training.data import data_dir_from, discover
    from training.evaluate import select_split
    from training.split import MANIFEST_NAME

    card = ModelCard.load(model_files(args.models_dir, args.model).card)
    samples = discover(data_dir_from(args.data_dir))
    manifest = args.models_dir / MANIFEST_NAME
    train = select_split(samples, manifest, "train")
    val = select_split(samples, manifest, "val")
    stats = {
        role: guard_statistics.usable_statistics([s.path for s in part], card)
        for role, part in (("train", train), ("val", val))
    }
    rng = np.random.default_rng(args.seed)
    picked = [val[i].path for i in rng.choice(len(val), min(args.images, len(val)), False)]
    sets = guard_statistics.variant_statistics(picked, card)
    sets |= guard_statistics.foreign_statistics(picked, card, args.seed)
    result = guard_statistics.flag_rates(stats["train"], stats["val"], sets)
    print(
        f"Share of {len(picked)} validation photographs (and of the foreign images made from "
        f"them) flagged by the guard's image component ({args.model}'s scale check; a "
        f"Gaussian fitted on {len(train)} train photographs, scaled by {len(val)} validation "
        "ones; in brackets, each set's photographs the scale check let through):\n",
        flush=True,
    )
    print(guard_statistics.markdown(result, list(sets)), flush=True)
    return 0
