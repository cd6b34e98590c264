"""Which photographs of the image store the records name, and the sweep of the others.

An upload stores its photographs before its case is committed, so a request that fails or
a worker that is killed part-way leaves files no record names. ``sweep`` removes them once
they are old enough that no upload still under way can be about to name them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from app.records.image_store import ImageStore
from app.records.schema import CaseField

# An upload names its photographs well within this (the proxy gives a request 5 minutes).
DEFAULT_AGE = timedelta(hours=1)


def referenced(session: Session | Connection) -> set[str]:
    """The sha256 of every photograph that a case's field says is stored."""
    rows = session.execute(select(CaseField.sha256).where(CaseField.stored).distinct())
    return {str(row[0]) for row in rows}


@dataclass(frozen=True)
class Sweep:
    """What a sweep removed (or, dry, would remove) and what it left."""

    removed: int
    freed_bytes: int
    too_recent: int  # unnamed, but younger than the age: perhaps an upload under way
    not_ours: int  # files the store did not write, left alone


def sweep(
    store: ImageStore, session: Session, older_than: timedelta = DEFAULT_AGE, dry: bool = False
) -> Sweep:
    """Remove the store's files that no record names and that are older than ``older_than``:
    photographs, and what writes stopped part-way left. The files are listed before the
    records are read, and each one's age is read again just before it goes, so a
    photograph that an upload stores (or stores again) meanwhile is kept."""
    cutoff = time.time() - older_than.total_seconds()
    listed = list(store.files())
    named = referenced(session)
    removed = freed = too_recent = not_ours = 0
    for path in listed:
        if store.is_photograph(path) and path.name in named:
            continue
        if not (store.is_photograph(path) or store.is_leftover(path)):
            not_ours += 1
            continue
        size = _old_size(path, cutoff)
        if size is None:
            too_recent += 1
            continue
        if not dry:
            store.remove(path)
        removed += 1
        freed += size
    return Sweep(removed, freed, too_recent, not_ours)


def _old_size(path: Path, cutoff: float) -> int | None:
    """The file's size when it was last written before ``cutoff``; None when it is newer
    (or gone)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size if stat.st_mtime < cutoff else None
