"""Progress bars for the long loops, on stderr so ``--json`` output on stdout stays clean."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track as rich_track

T = TypeVar("T")

_console = Console(stderr=True)


def track(items: Iterable[T], description: str) -> Iterator[T]:
    """``items``, with a progress bar while they are worked through (terminals only)."""
    return iter(rich_track(items, description=description, console=_console, transient=True))
