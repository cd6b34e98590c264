"""Training and the core, imported for real, load no web code.

The static checks are in ``tests/unit/test_layering.py``; this one imports the
modules in a fresh interpreter, which loads TensorFlow and takes seconds.
"""

from __future__ import annotations

from tests.unit.test_layering import WEB_STACK, run_python


def test_training_and_the_core_never_load_the_web_stack() -> None:
    # One interpreter for all: each of them loads TensorFlow, which takes seconds.
    modules = ["training.cli", "training.report", "app.core.service"]
    loaded = run_python(
        f"import json, sys, {', '.join(modules)}; "
        f"print(json.dumps([m for m in {WEB_STACK!r} if m in sys.modules]))"
    )
    assert loaded == []
