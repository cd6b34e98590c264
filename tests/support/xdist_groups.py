"""Which tests a parallel run (pytest-xdist, ``--dist loadgroup``) keeps on one worker.

A test module whose fixtures are made once a module (a gunicorn, a trained model, a served
cell model) runs whole on one worker, so its fixtures are made once; the browser tests run
together on one worker, so one Chromium serves them all; every other test goes on its own to
whichever worker is free. The modules are read, not imported: the controller that schedules
the tests never collects them.

xdist's own loadgroup reads ``xdist_group`` marks through the test ids, which pytest 9.2 no
longer lets a plugin change (pytest-xdist issue 1386), so the conftest hands xdist this
scheduler in its place.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

SHARED_SCOPES = {"module", "class", "package", "session"}
BROWSER_TESTS = "tests/e2e/"


def shares_fixtures(source: str) -> bool:
    """Whether a test module defines a fixture made once for more than one test, or takes
    fixtures from another test module (the browser tests' server and browser)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").rsplit(".", 1)[-1].startswith(
            "test_"
        ):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if not isinstance(decorator, ast.Call):
                    continue
                for keyword in decorator.keywords:
                    value = keyword.value
                    if (
                        keyword.arg == "scope"
                        and isinstance(value, ast.Constant)
                        and value.value in SHARED_SCOPES
                    ):
                        return True
    return False


class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """xdist's scope scheduling with a unit per test, per module that shares fixtures, and
    one for the browser tests."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.rootpath = Path(config.rootpath)
        self.sharing: dict[str, bool] = {}

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        if module.startswith(BROWSER_TESTS):
            return BROWSER_TESTS
        return module if self._shares(module) else nodeid

    def _shares(self, module: str) -> bool:
        if module not in self.sharing:
            path = self.rootpath / module
            readable = path.suffix == ".py" and path.is_file()
            self.sharing[module] = readable and shares_fixtures(path.read_text())
        return self.sharing[module]
