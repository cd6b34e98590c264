"""Switches a trained model's test-time views without retraining it.

The weights stay as trained; what changes is how the served model scores an
image (``app.views``), so the temperature, the test metrics and figures, the OOD
guard and the "uncertain" confidence are all fitted and measured again.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.model_store import read_metadata
from training.data import DataSetError, Sample, discover, resolve_image_root
from training.dataset import load_arrays
from training.evaluate import select_split
from training.ood import fit_ood
from training.split import MANIFEST_NAME
from training.train import MODEL_VERSION, calibrate_and_score, inference_section


def set_views(models_dir: str | Path, name: str, views: int, data_dir: str | Path,
              samples: list[Sample] | None = None) -> dict:
    """Make model ``name`` in ``models_dir`` average ``views`` views; returns its metadata."""
    out = Path(models_dir)
    meta_path = out / f"{name}.json"
    metadata = read_metadata(meta_path)
    # The data first: a data folder without the split's images leaves the model as it was.
    samples = samples if samples is not None else discover(resolve_image_root(data_dir))
    size = int(metadata["input_size"])
    arrays = {}
    for split in ("val", "test"):
        chosen = select_split(samples, out / MANIFEST_NAME, split)
        if not chosen:
            raise DataSetError(f"no image of {data_dir} is in the {split} split of "
                               f"{out / MANIFEST_NAME}")
        arrays[split] = load_arrays(chosen, size)

    metadata["inference"] = inference_section(views)
    # Same weights, different answers: a new model version.
    metadata["version"] = MODEL_VERSION
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n")
    calibrate_and_score(name, out, arrays)
    fit_ood(out, name, data_dir, samples=samples)
    return read_metadata(meta_path)
