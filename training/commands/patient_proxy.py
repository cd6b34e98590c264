"""``python -m training patient-proxy``: contiguous file-number folds against random ones."""

from __future__ import annotations

import argparse

from training.architectures import FIELD_ARCHITECTURES
from training.commands import options

NAME = "patient-proxy"
HELP = "hold out contiguous blocks of file numbers (a patient-level estimate) against random folds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    parser.add_argument("--model", choices=tuple(FIELD_ARCHITECTURES), default="lenet")
    options.models_dir(parser)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from, discover
    from training.patient_proxy import RESULT_NAME, evaluate, patient_proxy_markdown
    from training.train import TrainConfig

    config = TrainConfig(
        model=args.model,
        epochs=args.epochs,
        seed=args.seed,
        learning_rate=FIELD_ARCHITECTURES[args.model].learning_rate,
        dropout=FIELD_ARCHITECTURES[args.model].dropout,
    )
    evaluate(discover(data_dir_from(args.data_dir)), config, args.folds, args.models_dir)
    print(patient_proxy_markdown(args.models_dir / RESULT_NAME), flush=True)
    return 0
