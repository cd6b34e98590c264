"""Where training reads and writes by default.

Imports nothing heavy: the command line builds its options from these without loading
the data code or TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
# Below a models folder: the cross-validations over patient blocks (<model>.json each).
BLOCKS_RESULTS = "blocks"
# The data set folder when no --data-dir is given.
DATA_ENV = "ALL_DATA_DIR"
# The hand labels of whole leukocytes (protocol in docs/cell_labels.md).
LABELS_PATH = Path(__file__).resolve().parent / "labels" / "hand_cells.json"
