"""Options several commands share, each written once.

Imports nothing heavy (the architecture registry and the paths only); ``captures`` reads
the capture sets' names from ``training.capture`` (NumPy and Pillow, no TensorFlow).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.architectures import ARCHITECTURES, FIELD_ARCHITECTURES
from training.cell_config import CellTrainConfig
from training.paths import DATA_ENV, DEFAULT_MODELS_DIR

# The whole-field models, or every one of them.
MODEL_CHOICES = (*FIELD_ARCHITECTURES, "all")
SPLITS = ("train", "val", "test")
DATA_HELP = f"data set folder (default: ${DATA_ENV})"


def data_dir(parser: argparse.ArgumentParser) -> None:
    """--data-dir: the data set folder; ``training.data.data_dir_from`` falls back on
    ``$ALL_DATA_DIR`` when the command runs."""
    parser.add_argument("--data-dir", help=DATA_HELP)


def models_dir(parser: argparse.ArgumentParser, flag: str = "--models-dir") -> None:
    """A models folder (``--models-dir``, or ``--out`` for the commands that write one)."""
    parser.add_argument(flag, type=Path, default=DEFAULT_MODELS_DIR)


def every_model(parser: argparse.ArgumentParser, cells: bool = False) -> None:
    """--data-dir, --model (every model unless named; cell models too when ``cells``, for
    commands that go through the served path) and --models-dir."""
    data_dir(parser)
    choices = (*ARCHITECTURES, "all") if cells else MODEL_CHOICES
    parser.add_argument("--model", choices=choices, default="all")
    models_dir(parser)


def cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", type=Path, help="keep the cells' crops here between runs (a .npz file)"
    )


def captures(
    parser: argparse.ArgumentParser, split: str, default: tuple[str, ...] | None = None
) -> None:
    """--every and --captures: the simulated cases' images and capture sets (``default``:
    every set when None)."""
    from training.capture import CAPTURES

    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help=f"use every n-th {split} image (default 1: cases need runs of neighbouring files)",
    )
    parser.add_argument(
        "--captures",
        nargs="+",
        choices=tuple(CAPTURES),
        default=tuple(CAPTURES) if default is None else default,
        metavar="SET",
        help="capture sets to build the cases from (default: "
        + ("all of them" if default is None else " ".join(default))
        + ")",
    )


def probability(value: str) -> float:
    """An argparse type: a number between 0 and 1."""
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a probability between 0 and 1")
    return p


def cell_recipe(parser: argparse.ArgumentParser) -> None:
    """The cell recipe's settings a run may change: --epochs, --seed, --bag, the stain
    jitter's strength, the weight decay and the crops' geometric jitter (the defaults are
    ``CellTrainConfig``'s)."""
    parser.add_argument("--epochs", type=int, default=CellTrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=CellTrainConfig.seed)
    parser.add_argument(
        "--bag", type=int, default=CellTrainConfig.bag, help="cells drawn per field and step"
    )
    parser.add_argument(
        "--hed-gain",
        type=float,
        default=CellTrainConfig.hed_gain,
        help="stain jitter per field: each HED channel times 1 +- this",
    )
    parser.add_argument(
        "--hed-offset",
        type=float,
        default=CellTrainConfig.hed_offset,
        help="stain jitter per field: each HED channel plus +- this",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=CellTrainConfig.weight_decay,
        help="AdamW's decoupled weight decay",
    )
    parser.add_argument(
        "--crop-geometry",
        type=float,
        default=CellTrainConfig.crop_geometry,
        help="each crop turned by any angle, zoomed 1 +- this and moved up to this of its side",
    )


def cell_config(args: argparse.Namespace, model: str, learning_rate: float) -> CellTrainConfig:
    """The ``CellTrainConfig`` of ``cell_recipe``'s options."""
    return CellTrainConfig(
        model=model,
        epochs=args.epochs,
        seed=args.seed,
        learning_rate=learning_rate,
        bag=args.bag,
        hed_gain=args.hed_gain,
        hed_offset=args.hed_offset,
        weight_decay=args.weight_decay,
        crop_geometry=args.crop_geometry,
    )
