"""``python -m training cell-detection``: how well the cell path finds the leukocytes."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from training.commands import options
from training.paths import DEFAULT_MODELS_DIR, LABELS_PATH

NAME = "cell-detection"
HELP = "recall and precision of the leukocyte finder against segmented/ and hand labels"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    parser.add_argument(
        "--every", type=int, default=1, help="every N-th photograph of each class (default: all)"
    )
    parser.add_argument("--labels", type=Path, default=LABELS_PATH, help="hand labels (JSON)")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR / "cell_detection.json")


def run(args: argparse.Namespace) -> int:
    from training.cell_detection import evaluate, markdown
    from training.data import data_dir_from

    result = evaluate(data_dir_from(args.data_dir), args.every, args.labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log.info("wrote %s", args.out)
    print(markdown(result), flush=True)
    return 0
