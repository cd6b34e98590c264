"""A field's pictures as a case keeps them: a thumbnail and cell crops, already encoded.

Data only, so the records import it without the image libraries that make them
(``app.core.explanation.gallery``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CellPicture:
    """One leukocyte cut out square: its rank (from 1), its box and the crop as a JPEG file.
    A segmented cell's box is x0, y0, x1, y1 in the pixels of the field the model saw; a
    cell model's is x, y, width, height in the uploaded photograph's, as its answer gives."""

    index: int
    box: list[int]
    jpeg: bytes


@dataclass(frozen=True)
class FieldPictures:
    """A field's thumbnail (JPEG) and its cell crops."""

    thumbnail: bytes
    cells: list[CellPicture]
