"""``python -m training resplit``: rewrite the split manifest by the current rule."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.core.model_card import ModelCard
from app.core.model_files import model_files
from training.commands import options
from training.commands.common import selected_models

NAME = "resplit"
HELP = (
    "rewrite the split manifest by the current rule (near duplicates together); "
    "refuses to move an image out of train or val"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.data_dir(parser)
    options.models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from training.data import data_dir_from, discover
    from training.split import MANIFEST_NAME, assign_splits, moves, read_manifest, write_manifest

    root = Path(data_dir_from(args.data_dir))
    samples = discover(root)
    manifest = args.models_dir / MANIFEST_NAME
    new = assign_splits(samples)
    changed = moves(read_manifest(manifest), new)
    by_sha = {s.sha256: s for s in samples}
    for sha, (old_split, new_split) in sorted(changed.items()):
        print(f"{by_sha[sha].path.relative_to(root)}: {old_split} -> {new_split}", flush=True)
    digest = write_manifest(samples, new, root, manifest)
    for name in selected_models(args.models_dir, "all", unit=None):
        path = model_files(args.models_dir, name).card
        card = ModelCard.load(path)
        if card.split_manifest.sha256 != digest:
            card.split_manifest.sha256 = digest
            card.save(path)
    print(f"{len(changed)} image(s) changed split; manifest sha256 {digest}", flush=True)
    return 0
