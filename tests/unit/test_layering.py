"""The architecture's rules, checked on the source and in fresh interpreters.

The ML core (``app.core``) imports no Flask and nothing of the web layer;
``training`` builds on the core only; the app never imports ``training``;
only ``python -m training`` imports training's commands; there is no import
cycle; ``import app`` and the core's class definitions are cheap; only
``app.core.model_files`` knows how a model's files are named.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.models import ROOT

PACKAGES = ("app", "training", "benchmarks", "tests")
WEB_STACK = ("flask", "flask_wtf", "werkzeug", "jinja2", "prometheus_client", "gunicorn")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported_names(path: Path) -> Iterator[str]:
    """Every module an import statement of ``path`` names, at any depth, except those
    under ``if TYPE_CHECKING:`` (which never run)."""

    def visit(node: ast.AST) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                yield from (n for c in child.orelse for n in visit_one(c))
                continue
            yield from visit_one(child)

    def visit_one(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        yield from visit(node)

    yield from visit(ast.parse(path.read_text(), filename=str(path)))


def project_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's own modules that ``path`` imports (``from a import b``: a.b if a
    module, else a)."""
    return {name for name in imported_names(path) if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: project_imports(path, modules) - {name} for name, path in modules.items()}


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    # The check must be able to fail: a nested import closing a loop is found too.
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    assert list(imported_names(tmp_path / "b.py")) == ["a", "a.x"]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
    (tmp_path / "c.py").write_text(guarded)
    assert "a" not in set(imported_names(tmp_path / "c.py"))


def _imports_of(prefix: str) -> dict[str, set[str]]:
    return {
        name: set(imported_names(path))
        for name, path in project_modules().items()
        if name == prefix or name.startswith(prefix + ".")
    }


def _offending(imports: dict[str, set[str]], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {
        name: sorted(
            i
            for i in names
            if i.split(".")[0] in forbidden
            or i in forbidden
            or any(i.startswith(f + ".") for f in forbidden)
        )
        for name, names in imports.items()
    }
    return {name: found for name, found in bad.items() if found}


def test_the_core_imports_no_web_code() -> None:
    assert _imports_of("app.core"), "no core modules found"
    assert not _offending(_imports_of("app.core"), (*WEB_STACK, "app.web", "training"))


def test_the_core_imports_nothing_of_the_records() -> None:
    assert not _offending(_imports_of("app.core"), ("app.records",))


def test_the_records_import_no_flask_and_no_web_code() -> None:
    # werkzeug.security (password hashes) is allowed: it is a library, not the web stack.
    assert _imports_of("app.records"), "no records modules found"
    web = ("flask", "flask_wtf", "flask_login", "jinja2", "app.web")
    assert not _offending(_imports_of("app.records"), web)


def test_training_builds_on_the_core_only() -> None:
    imports = _imports_of("training")
    assert not _offending(imports, (*WEB_STACK, "app.web"))
    # ``import app`` or ``from app import create_app`` would reach the web factory.
    assert not {name: i for name, i in imports.items() if "app" in i or "app.create_app" in i}


def test_the_app_never_imports_training() -> None:
    assert not _offending(_imports_of("app"), ("training",))


def test_only_the_training_command_line_imports_its_commands() -> None:
    # The commands are training's top layer: no library module may depend on them.
    top = ("training.cli", "training.commands")
    users = {
        name
        for name, names in _imports_of("training").items()
        if not name.startswith(top)
        and name != "training.__main__"
        and any(i.startswith(top) for i in names)
    }
    assert not users, users


def test_only_model_files_knows_the_file_names() -> None:
    spelled = [
        name
        for name, path in project_modules().items()
        if name.startswith(("app", "training", "benchmarks"))
        and name != "app.core.model_files"
        and ('.keras"' in path.read_text() or "*.keras" in path.read_text())
    ]
    assert not spelled, spelled


def run_python(code: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_app_loads_neither_tensorflow_nor_flask() -> None:
    loaded = run_python(
        "import app, json, sys; "
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'flask', "
        "'numpy') if m in sys.modules]))"
    )
    assert loaded == []


def test_the_class_definitions_import_in_under_a_fifth_of_a_second() -> None:
    timing = run_python(
        "import json, sys, time; t = time.perf_counter(); "
        "import app.core.classes; s = time.perf_counter() - t; "
        "print(json.dumps({'seconds': s, 'heavy': [m for m in "
        "('numpy', 'tensorflow', 'flask') if m in sys.modules]}))"
    )
    assert timing["heavy"] == []
    assert timing["seconds"] < 0.2
