"""Finds the images of a data set folder and maps its class folders to class ids."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.classes import CLASS_IDS
from app.core.errors import CaptureError, ImageDecodeError, ImageTooLargeError
from app.core.model_card import ScaleSpec
from app.core.preprocessing import PreparedImage, load_image, prepare, to_model_input
from training.paths import DATA_ENV

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"}

# Folder names of the original release and of the Kaggle re-upload.
_FOLDER_ALIASES: dict[str, str] = {
    "benign": "benign",
    "early": "early_pre_b",
    "pre": "pre_b",
    "pro": "pro_b",
    "[malignant] early pre-b": "early_pre_b",
    "[malignant] pre-b": "pre_b",
    "[malignant] pro-b": "pro_b",
}
_FOLDER_ALIASES.update({class_id: class_id for class_id in CLASS_IDS})


class DataSetError(ValueError):
    """The data folder is missing or not laid out as a class-per-folder data set."""


def data_dir_from(value: str | None) -> str:
    """The data folder given on the command line, else ``$ALL_DATA_DIR``."""
    value = value or os.environ.get(DATA_ENV)
    if not value:
        raise DataSetError(f"no data folder: pass --data-dir or set {DATA_ENV}")
    return value


@dataclass(frozen=True)
class Sample:
    path: Path
    class_id: str
    sha256: str

    @property
    def label(self) -> int:
        return CLASS_IDS.index(self.class_id)


def class_id_for_folder(name: str) -> str:
    """Map a class folder name (either release's spelling) to a stable class id."""
    key = re.sub(r"\s+", " ", name.strip().lower())
    try:
        return _FOLDER_ALIASES[key]
    except KeyError:
        known = ", ".join(
            sorted(
                {
                    "Benign",
                    "Early",
                    "Pre",
                    "Pro",
                    "[Malignant] early Pre-B",
                    "[Malignant] Pre-B",
                    "[Malignant] Pro-B",
                }
            )
        )
        raise DataSetError(f"unknown class folder {name!r}; expected one of: {known}") from None


def resolve_image_root(data_dir: str | Path) -> Path:
    """Return the folder holding the class folders.

    Accepts the folder itself, or a data set root with the class folders under
    ``original/`` (the shared copy's layout).
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataSetError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataSetError(f"{str(root)!r} is not a folder")
    if (root / "original").is_dir():
        root = root / "original"
    return root


def read_input(sample: Sample, input_size: int, scale: ScaleSpec | None = None) -> np.ndarray:
    """The sample through the shared preprocessing; unreadable files are a DataSetError."""
    try:
        image = load_image(sample.path)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        raise DataSetError(f"unreadable image {str(sample.path)!r}: {exc}") from exc
    return prepared_or_whole(image, input_size, scale, str(sample.path)).x


def prepared_or_whole(
    image: Image.Image, input_size: int, scale: ScaleSpec | None, name: str = "an image"
) -> PreparedImage:
    """``prepare``; where the app would refuse the scale, the whole image, so every image
    is scored (the capture-robustness suite counts the refusals)."""
    try:
        return prepare(image, input_size, scale)
    except CaptureError as exc:
        log.debug("%s: the app would refuse it (%s); scored whole", name, exc.reason)
        return PreparedImage(image, to_model_input(image, input_size), None)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def discover(data_dir: str | Path) -> list[Sample]:
    """List every image under the class folders of ``data_dir``, sorted by path.

    Raises DataSetError for a missing folder, no class folders, an unknown
    class folder or a class folder with no images.
    """
    root = resolve_image_root(data_dir)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataSetError(
            f"no class folders in {str(root)!r}: expected Benign/, Early/, Pre/, Pro/ "
            "(or the Kaggle names) each holding images"
        )
    samples: list[Sample] = []
    for folder in folders:
        class_id = class_id_for_folder(folder.name)
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataSetError(f"class folder {str(folder)!r} holds no images")
        samples.extend(Sample(path=p, class_id=class_id, sha256=_sha256(p)) for p in files)
    return samples
