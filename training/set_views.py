"""Switches a trained model's test-time views without retraining it.

The weights stay as trained; what changes is how the served model scores an
image, or a cell model each crop (``app.core.orientations``), so the temperature,
the test metrics and figures, the OOD guard and the "uncertain" confidence are all
fitted and measured again.
"""

from __future__ import annotations

from pathlib import Path

from app.core.model_card import InferenceSpec, ModelCard
from app.core.model_files import model_files
from training.cell_train import set_cell_views
from training.data import DataSetError, Sample, discover, resolve_image_root
from training.dataset import load_arrays
from training.evaluate import select_split
from training.ood import fit_ood
from training.split import MANIFEST_NAME
from training.train import MODEL_VERSION, calibrate_and_score


def set_views(
    models_dir: str | Path,
    name: str,
    views: int,
    data_dir: str | Path,
    samples: list[Sample] | None = None,
    cache_dir: Path | None = None,
) -> ModelCard:
    """Make model ``name`` in ``models_dir`` average ``views`` views; returns its card. A
    cell model averages the views of each crop (``training.cell_train.set_cell_views``;
    ``cache_dir``: where its crops are kept between runs)."""
    out = Path(models_dir)
    card_path = model_files(out, name).card
    card = ModelCard.load(card_path)
    if card.unit == "cell":
        return set_cell_views(out, name, views, data_dir, samples, cache_dir)
    # The data first: a data folder without the split's images leaves the model as it was.
    samples = samples if samples is not None else discover(resolve_image_root(data_dir))
    arrays = {}
    for split in ("val", "test"):
        chosen = select_split(samples, out / MANIFEST_NAME, split)
        if not chosen:
            raise DataSetError(
                f"no image of {data_dir} is in the {split} split of {out / MANIFEST_NAME}"
            )
        arrays[split] = load_arrays(chosen, card.input_size, card.scale)

    card.inference = InferenceSpec.for_views(views)
    # Same weights, different answers: a new model version.
    card.version = MODEL_VERSION
    card.save(card_path)
    calibrate_and_score(name, out, arrays)
    fit_ood(out, name, data_dir, samples=samples)
    return ModelCard.load(card_path)
