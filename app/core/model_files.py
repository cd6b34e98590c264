"""Where a model's files live in a models folder, and which models a folder holds.

A model ``NAME`` is ``NAME.keras`` (the network) with ``NAME.json`` (its card,
``app.core.model_card``) and, once its guard is fitted, ``NAME.ood.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.errors import NoModelsError

WEIGHTS_SUFFIX = ".keras"
CARD_SUFFIX = ".json"
OOD_SUFFIX = ".ood.npz"


@dataclass(frozen=True)
class ModelFiles:
    models_dir: Path
    name: str

    @property
    def weights(self) -> Path:
        return self.models_dir / f"{self.name}{WEIGHTS_SUFFIX}"

    @property
    def card(self) -> Path:
        return self.models_dir / f"{self.name}{CARD_SUFFIX}"

    @property
    def ood(self) -> Path:
        return self.models_dir / f"{self.name}{OOD_SUFFIX}"


def model_files(models_dir: str | Path, name: str) -> ModelFiles:
    return ModelFiles(Path(models_dir), name)


def model_names(models_dir: str | Path) -> list[str]:
    """Names of the models in ``models_dir`` that have both their network and their card."""
    root = Path(models_dir)
    stems = (p.name.removesuffix(WEIGHTS_SUFFIX) for p in root.glob(f"*{WEIGHTS_SUFFIX}"))
    return sorted(s for s in stems if model_files(root, s).card.is_file())


def served_names(models_dir: str | Path, default_model: str) -> list[str]:
    """``model_names``, checked: NoModelsError when the folder has none or lacks the default."""
    names = model_names(models_dir)
    if not names:
        raise NoModelsError(
            f"no models in {models_dir} (need <name>.keras with <name>.json); "
            "set MODELS_DIR to a folder of trained models"
        )
    if default_model not in names:
        raise NoModelsError(
            f"default model {default_model!r} is not in {models_dir} "
            f"(found: {', '.join(names)}); set DEFAULT_MODEL"
        )
    return names
