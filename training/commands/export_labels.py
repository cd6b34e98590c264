"""``python -m training export-labels``: the cells reviewers classified in the app's cases."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

NAME = "export-labels"
HELP = "write the cells reviewers classified in the app's cases"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    parser.add_argument(
        "--database-url",
        help="the app's database (default: DATABASE_URL, else instance/cases.sqlite3)",
    )


def run(args: argparse.Namespace) -> int:
    from app.records.database import DatabaseError
    from training.reviewed_cells import ExportError, database_url, export_labels

    try:
        count = export_labels(database_url(args.database_url), args.out)
    except (ExportError, DatabaseError) as exc:
        log.error("error: %s", exc)
        return 2
    print(json.dumps({"cells": count, "out": str(args.out)}), flush=True)
    return 0
