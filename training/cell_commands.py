"""The cell path's commands: ``cell-blocks`` (cross-validation over patient blocks)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

from training.architectures import CELL_ARCHITECTURES
from training.cell_mil import CellTrainConfig

log = logging.getLogger(__name__)
Handler = Callable[[argparse.Namespace], int]


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], data_help: str, models_dir: Path
) -> dict[str, Handler]:
    """Register the cell commands on ``sub``; their handlers by name."""
    blocks = sub.add_parser(
        "cell-blocks",
        help="cross-validate a cell model over blocks of neighbouring files (held-out patients)",
    )
    blocks.add_argument("--model", choices=(*CELL_ARCHITECTURES, "all"), default="all")
    blocks.add_argument("--data-dir", help=data_help)
    blocks.add_argument("--models-dir", type=Path, default=models_dir)
    blocks.add_argument("--folds", type=int, default=5)
    blocks.add_argument("--epochs", type=int, default=CellTrainConfig.epochs)
    blocks.add_argument("--seed", type=int, default=CellTrainConfig.seed)
    blocks.add_argument(
        "--cache-dir", type=Path, help="keep the cells' crops here between runs (a .npz file)"
    )
    from training import cell_detection

    detection = cell_detection.add_parser(sub, data_help, models_dir)
    return {"cell-blocks": _cell_blocks, **detection}


def _cell_blocks(args: argparse.Namespace) -> int:
    from training.architectures import architecture
    from training.cell_bags import load_bags
    from training.cell_cv import cross_validate_cells
    from training.cli import _data_dir
    from training.data import discover

    samples = discover(_data_dir(args.data_dir))
    bags = load_bags(samples, args.cache_dir)
    names = list(CELL_ARCHITECTURES) if args.model == "all" else [args.model]
    for name in names:
        config = CellTrainConfig(
            model=name,
            epochs=args.epochs,
            seed=args.seed,
            learning_rate=architecture(name).learning_rate,
        )
        result = cross_validate_cells(samples, bags, config, args.folds)
        path = result.save(args.models_dir, samples)
        summary = json.loads(path.read_text())
        print(
            json.dumps(
                {
                    "model": name,
                    "held_out": summary["held_out"],
                    "validation": summary["validation"],
                }
            ),
            flush=True,
        )
    return 0
