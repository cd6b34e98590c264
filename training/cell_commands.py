"""The cell path's commands: ``cell-blocks`` (cross-validation over patient blocks)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

from training.architectures import CELL_ARCHITECTURES, FIELD_ARCHITECTURES
from training.cell_mil import CellTrainConfig
from training.data import data_dir_from

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
    field = sub.add_parser(
        "field-blocks",
        help="cross-validate a whole-field model over the same blocks, for comparison",
    )
    field.add_argument("--model", choices=(*FIELD_ARCHITECTURES, "all"), default="all")
    field.add_argument("--data-dir", help=data_help)
    field.add_argument("--models-dir", type=Path, default=models_dir)
    field.add_argument("--folds", type=int, default=5)
    field.add_argument("--epochs", type=int, default=10)
    field.add_argument("--seed", type=int, default=42)
    report = sub.add_parser(
        "blocks-report",
        help="write the held-out-patient section of REPORT.md and the cards' patient_blocks",
    )
    report.add_argument("--models-dir", type=Path, default=models_dir)
    report.add_argument(
        "--data-dir", help="also check that neighbouring files look alike (a data set folder)"
    )
    stains = sub.add_parser(
        "stain-robustness",
        help="accuracy of the served models on greyscale and stain-swapped test photographs",
    )
    stains.add_argument("--data-dir", help=data_help)
    stains.add_argument("--models-dir", type=Path, default=models_dir)
    stains.add_argument(
        "--update-report", action="store_true", help="replace the section in REPORT.md"
    )
    train = sub.add_parser(
        "train-cells", help="train a cell model on the committed split and write its card"
    )
    train.add_argument("--model", choices=tuple(CELL_ARCHITECTURES), required=True)
    train.add_argument("--data-dir", help=data_help)
    train.add_argument("--out", type=Path, default=models_dir)
    train.add_argument("--epochs", type=int, default=CellTrainConfig.epochs)
    train.add_argument("--seed", type=int, default=CellTrainConfig.seed)
    train.add_argument(
        "--cache-dir", type=Path, help="keep the cells' crops here between runs (a .npz file)"
    )
    train.add_argument(
        "--extra-labels", type=Path, help="an export-labels folder: reviewed cells to train on"
    )
    export = sub.add_parser(
        "export-labels", help="write the cells reviewers classified in the app's cases"
    )
    export.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    export.add_argument(
        "--database-url",
        help="the app's database (default: DATABASE_URL, else instance/cases.sqlite3)",
    )
    from training import cell_detection

    detection = cell_detection.add_parser(sub, data_help, models_dir)
    return {
        "cell-blocks": _cell_blocks,
        "field-blocks": _field_blocks,
        "blocks-report": _blocks_report,
        "stain-robustness": _stain_robustness,
        "train-cells": _train_cells,
        "export-labels": _export_labels,
        **detection,
    }


def _cell_blocks(args: argparse.Namespace) -> int:
    from training.architectures import architecture
    from training.cell_bags import load_bags
    from training.cell_cv import cross_validate_cells
    from training.data import discover

    samples = discover(data_dir_from(args.data_dir))
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


def _train_cells(args: argparse.Namespace) -> int:
    from training.architectures import architecture
    from training.cell_train import train_cells

    config = CellTrainConfig(
        model=args.model,
        epochs=args.epochs,
        seed=args.seed,
        learning_rate=architecture(args.model).learning_rate,
    )
    card = train_cells(
        config, data_dir_from(args.data_dir), args.out, args.cache_dir, args.extra_labels
    )
    metrics = card.test_metrics
    print(
        json.dumps(
            {
                "model": card.name,
                "test_accuracy": None if metrics is None else metrics.accuracy,
                "temperature": card.calibration.temperature,
                "uncertain_below": card.calibration.uncertain_below,
            }
        ),
        flush=True,
    )
    return 0


def _export_labels(args: argparse.Namespace) -> int:
    from app.records.database import DatabaseError
    from training.reviewed_cells import ExportError, database_url, export_labels

    try:
        count = export_labels(database_url(args.database_url), args.out)
    except (ExportError, DatabaseError) as exc:
        log.error("error: %s", exc)
        return 2
    print(json.dumps({"cells": count, "out": str(args.out)}), flush=True)
    return 0


def _field_blocks(args: argparse.Namespace) -> int:
    from training.data import discover
    from training.field_blocks import cross_validate_field
    from training.train import TrainConfig

    samples = discover(data_dir_from(args.data_dir))
    names = list(FIELD_ARCHITECTURES) if args.model == "all" else [args.model]
    for name in names:
        arch = FIELD_ARCHITECTURES[name]
        config = TrainConfig(
            model=name,
            epochs=args.epochs,
            seed=args.seed,
            learning_rate=arch.learning_rate,
            dropout=arch.dropout,
        )
        result = cross_validate_field(samples, config, arch.input_size, args.folds)
        path = result.save(args.models_dir, samples)
        summary = json.loads(path.read_text())
        print(json.dumps({"model": name, "held_out": summary["held_out"]}), flush=True)
    return 0


def _blocks_report(args: argparse.Namespace) -> int:
    from training.blocks_report import blocks_markdown, write_blocks_report, write_neighbours
    from training.data import discover

    if args.data_dir:
        write_neighbours(discover(args.data_dir), args.models_dir)
    updated = write_blocks_report(args.models_dir)
    print(blocks_markdown(args.models_dir), flush=True)
    log.info("cards updated: %s", ", ".join(updated) or "none")
    return 0


def _stain_robustness(args: argparse.Namespace) -> int:
    from app.core.service import InferenceService
    from training import stain_robustness
    from training.data import discover
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
