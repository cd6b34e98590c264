"""TensorFlow runs with oneDNN's kernels wherever the core is imported first (serving,
training, the tests), unless the operator says otherwise, and the committed cell models
answer the same either way; the setting must be in place before TensorFlow loads, so each
case is a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.models import ROOT, find_models_dir

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
REPORT = (
    "from tensorflow.python.util import _pywrap_util_port as port; "
    "print('oneDNN', port.IsMklEnabled())"
)


# The committed cell models' logits and attention for 40 seeded crops, as JSON.
CELL_OUTPUTS = """
import json, sys
import numpy as np
from app.core.cells.model import load_cell_model
crops = np.random.default_rng(3).random((40, 64, 64, 3), dtype=np.float32)
out = {}
for name in ("cell_lenet", "cellnet"):
    run = load_cell_model(sys.argv[1], name).run(crops)
    out[name] = [run.logits.tolist(), run.scores.tolist()]
print(json.dumps(out))
"""


def _fresh_process(code: str, setting: str | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != ONEDNN}
    if setting is not None:
        env[ONEDNN] = setting
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("first_import", ["app.core.service", "training.cell_mil"])
def test_the_core_turns_onednn_on_before_tensorflow_loads(first_import: str) -> None:
    assert _fresh_process(f"import {first_import}; {REPORT}", None) == "oneDNN True"


def test_an_operators_setting_wins() -> None:
    assert _fresh_process(f"import app.core.service; {REPORT}", "0") == "oneDNN False"


def test_the_cell_models_answer_the_same_with_and_without_onednn() -> None:
    # Its kernels order their sums differently: the outputs move in the last float bits only.
    models = find_models_dir()
    if models is None:
        pytest.skip("no models folder (MODELS_DIR or models/)")
    on = json.loads(_fresh_process(CELL_OUTPUTS, None, str(models)))
    off = json.loads(_fresh_process(CELL_OUTPUTS, "0", str(models)))
    for name in ("cell_lenet", "cellnet"):
        for with_it, without_it in zip(on[name], off[name], strict=True):
            assert np.allclose(with_it, without_it, rtol=0, atol=1e-4), name
