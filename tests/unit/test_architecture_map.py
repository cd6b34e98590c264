"""The README's architecture map names every module of ``app`` and ``training``, each with its
line of what it does, and nothing that is gone.

The map is the first code block of the README's "## Architecture" section: one entry a line,
a folder ending in ``/``, two spaces of indentation a level, then the entry's words.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.models import ROOT

CHECKED = ("app", "training")
# Folders the map may cover with one line instead of a line per module.
COVERED_WHOLE = {"app/records/migrations/versions"}
ENTRY = re.compile(r"(?P<indent> *)(?P<name>[A-Za-z_][\w.]*(?:\.py|/))(?: +(?P<words>\S.*))?")


def map_block(readme: str) -> str:
    section = readme.split("\n## Architecture\n", 1)[1]
    return section.split("```", 2)[1]


def map_entries(block: str) -> dict[str, str]:
    """Each entry's path from the project root (folders without their ``/``) and its words."""
    entries: dict[str, str] = {}
    folders: list[str] = []
    for line in block.splitlines():
        found = ENTRY.fullmatch(line)
        if not found:
            continue
        depth, odd = divmod(len(found["indent"]), 2)
        assert not odd, f"the map's indentation is off at {line!r}"
        assert depth <= len(folders), f"the map's indentation is off at {line!r}"
        name = found["name"]
        path = "/".join([*folders[:depth], name.rstrip("/")])
        assert path not in entries, f"the map names {path} twice"
        entries[path] = found["words"] or ""
        if name.endswith("/"):
            folders[depth:] = [name.rstrip("/")]
    return entries


def project_modules(root: Path) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for package in CHECKED
        for path in (root / package).rglob("*.py")
        if path.name != "__init__.py"
        and not any(path.parent.relative_to(root).as_posix().startswith(c) for c in COVERED_WHOLE)
    }


def checked(entries: dict[str, str]) -> dict[str, str]:
    return {path: words for path, words in entries.items() if path.split("/")[0] in CHECKED}


ENTRIES = checked(map_entries(map_block((ROOT / "README.md").read_text())))


def test_every_module_is_on_the_map() -> None:
    missing = sorted(project_modules(ROOT) - set(ENTRIES))
    assert not missing, f"add these to the README's architecture map: {missing}"


def test_the_map_names_only_what_exists() -> None:
    gone = sorted(path for path in ENTRIES if not (ROOT / path).exists())
    assert not gone, f"the README's architecture map names what no longer exists: {gone}"


def test_every_module_on_the_map_says_what_it_does() -> None:
    silent = sorted(path for path, words in ENTRIES.items() if path.endswith(".py") and not words)
    assert not silent, silent


def test_the_folders_covered_whole_are_on_the_map() -> None:
    assert COVERED_WHOLE <= set(ENTRIES)


def test_the_check_finds_a_missing_and_a_stale_module(tmp_path: Path) -> None:
    # The checks must be able to fail: paths come from the indentation, folders end in "/".
    block = "\napp/      the app\n  web/    the web\n    gone.py   what was\n  x.py   x\ntests/\n"
    entries = map_entries(block)
    assert entries == {
        "app": "the app",
        "app/web": "the web",
        "app/web/gone.py": "what was",
        "app/x.py": "x",
        "tests": "",
    }
    for module in ("app/web/kept.py", "app/x.py", "app/web/__init__.py", "training/t.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    assert project_modules(tmp_path) - set(entries) == {"app/web/kept.py", "training/t.py"}
    assert [p for p in checked(entries) if not (tmp_path / p).exists()] == ["app/web/gone.py"]
