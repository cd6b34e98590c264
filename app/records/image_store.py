"""The original photographs, in a content-addressed folder: one file per sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.core.errors import RequestRefusedError

log = logging.getLogger(__name__)
# Files the store writes before a photograph is in place (a write stopped part-way leaves one).
PARTIAL_PREFIX = ".partial-"
PROBE_PREFIX = ".probe-"
# Times a put makes its folder again when a deletion empties and removes it in between.
_FOLDER_TRIES = 3


class StoreUnavailableError(RequestRefusedError):
    """The photographs cannot be written (a read-only or full disk): a server fault, not the
    request's, so 503 rather than 500."""

    status = 503
    code = "image_store_unavailable"


class ImageStore:
    """Files at ``root/ab/<sha256>``; writing the same photograph twice keeps one copy.
    Stores written before 2026-12-08 hold theirs a folder deeper, at ``root/ab/cd/<sha256>``:
    those are found, kept and removed where they are."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where a new photograph of this sha256 is written."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def places(self, sha256: str) -> tuple[Path, Path]:
        """Where a photograph of this sha256 may be: the layout's place, then the older
        layout's (a second folder level made most new photographs a folder of their own)."""
        new = self.path(sha256)
        return new, new.parent / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` (atomically: never a half-written file); returns its sha256.
        StoreUnavailableError when the store cannot be written."""
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            self._write(sha256, data)
        except OSError as exc:
            raise StoreUnavailableError(
                "The photographs cannot be stored: the server's image store cannot be written "
                f"({exc.strerror or exc}). Nothing was saved; tell the administrator."
            ) from exc
        return sha256

    def _write(self, sha256: str, data: bytes) -> None:
        for place in self.places(sha256):
            if place.exists():
                # Stored again is as new: the sweep of unused files must wait for it.
                os.utime(place)
                return
        target = self.path(sha256)
        fd, partial, made = _open_partial(self.root, target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before its name is: never an empty file
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        # Each new name synced too: the case that refers to it is durable once committed.
        for folder in [target.parent, *(made_folder.parent for made_folder in made)]:
            _sync_folder(folder)

    def problem(self) -> str | None:
        """Why photographs cannot be stored now, or None: a file is written and removed."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=PROBE_PREFIX)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"the image store cannot be written ({exc.strerror or exc})"
        return None

    def get(self, sha256: str) -> bytes | None:
        for place in self.places(sha256):
            try:
                return place.read_bytes()
            except FileNotFoundError:
                continue
        return None

    def delete(self, sha256: str) -> None:
        """Remove the file, and its folders once they are empty; a file that cannot be
        removed stays, for ``flask images gc`` to remove later."""
        try:
            for place in self.places(sha256):
                self.remove(place)
        except OSError as exc:
            log.warning("photograph %s stays in the image store: %s", sha256, exc.strerror)

    def remove(self, path: Path) -> None:
        """Remove a file of the store, and the folders above it that it leaves empty."""
        path.unlink(missing_ok=True)
        for folder in path.parents:
            if folder == self.root or self.root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty, or already gone
                break

    def files(self) -> Iterator[Path]:
        """Every file under the root: photographs, and whatever else is there."""
        if self.root.is_dir():
            yield from (path for path in self.root.rglob("*") if path.is_file())

    def is_photograph(self, path: Path) -> bool:
        """Whether ``path`` is where the store keeps the photograph it is named after."""
        try:
            return path in self.places(path.name)
        except ValueError:
            return False

    def is_leftover(self, path: Path) -> bool:
        """Whether ``path`` is a file the store writes on the way to a photograph or a probe."""
        return path.name.startswith((PARTIAL_PREFIX, PROBE_PREFIX))


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_partial(root: Path, folder: Path) -> tuple[int, str, list[Path]]:
    """A new partial file in ``folder`` (its descriptor and path), and the folders made for
    it. Once the file is in the folder no deletion can remove the folder, so a folder a
    deletion removed between its making and the file is made again."""
    made: list[Path] = []
    for _ in range(_FOLDER_TRIES):
        try:
            fd, partial = tempfile.mkstemp(dir=folder, prefix=PARTIAL_PREFIX)
        except FileNotFoundError:
            made += [place for place in (root, folder) if _made(place) and place not in made]
            continue
        return fd, partial, made
    fd, partial = tempfile.mkstemp(dir=folder, prefix=PARTIAL_PREFIX)
    return fd, partial, made


def _made(folder: Path) -> bool:
    """Whether this call made ``folder`` (False: it was there)."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    return True
