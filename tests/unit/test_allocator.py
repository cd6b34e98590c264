"""The allocator keeps a field's working memory: arrays made and freed photograph after
photograph are not faulted in afresh each time (glibc only; elsewhere it says so)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any

import pytest

from app.core.allocator import ENVIRONMENT, TRIM_BYTES
from tests.support.models import ROOT

# Five 600 KB planes alive at once, then freed: a 224 px field's work in miniature.
FIELDS = """
import json, numpy as np, sys
from app.core.allocator import keep_working_memory
kept = keep_working_memory() if sys.argv[1] == "kept" else None
def faults():
    return int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[7])
for _ in range(3):
    planes = [np.ones(150_000, np.float32) for _ in range(5)]
    del planes
before = faults()
for _ in range(100):
    planes = [np.ones(150_000, np.float32) for _ in range(5)]
    del planes
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def fields(mode: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", FIELDS, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**clean, **(env or {})},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_freed_planes_are_not_faulted_in_again() -> None:
    default = fields("default")
    kept = fields("kept")
    assert kept["kept"] is True
    # By default each round faults its planes in again (about 550 pages a round).
    assert default["faults"] > 100 * 300
    assert kept["faults"] < default["faults"] // 20


@glibc
def test_an_operators_glibc_settings_win() -> None:
    chosen = fields("kept", {"MALLOC_TRIM_THRESHOLD_": str(TRIM_BYTES // 4)})
    assert chosen["kept"] is False
