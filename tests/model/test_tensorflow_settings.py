"""TensorFlow runs with oneDNN's kernels wherever the core is imported first (serving,
training, the tests), unless the operator says otherwise; the setting must be in place
before TensorFlow loads, so each case is a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.models import ROOT

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
REPORT = (
    "from tensorflow.python.util import _pywrap_util_port as port; "
    "print('oneDNN', port.IsMklEnabled())"
)


def _onednn_in_fresh_process(first_import: str, setting: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != ONEDNN}
    if setting is not None:
        env[ONEDNN] = setting
    done = subprocess.run(
        [sys.executable, "-c", f"import {first_import}; {REPORT}"],
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
    assert _onednn_in_fresh_process(first_import, None) == "oneDNN True"


def test_an_operators_setting_wins() -> None:
    assert _onednn_in_fresh_process("app.core.service", "0") == "oneDNN False"
