"""What a case shows of each field besides its verdict: a thumbnail and its cell crops.

A model of the whole field gets the leukocytes a colour segmentation finds; a cell model
gets the very crops it classifies. A case's pictures are made on the image threads while
the model pass runs (``app.core.parallel.start``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from app.core.cells.crops import FieldCells
from app.core.explanation.segmentation import segment
from app.core.imaging import jpeg_of, pixels, resized
from app.core.pictures import CellPicture, FieldPictures
from app.core.prediction import Prediction
from app.core.preprocessing import photograph_size

THUMBNAIL_SIDE = 192
# The cell gallery: at most this many leukocytes per field, shown this size; a crop is
# kept at its own resolution up to it (the page enlarges a smaller one).
MAX_CELLS = 12
CELL_SIDE = 96
CROP_QUALITY = 95
CELL_MARGIN = 1.4
# The gallery needs boxes, not outlines: a coarser segmentation finds the same cells sooner.
CELL_WORK_SIDE = 128


def field_pictures(image: Image.Image, field_image: Image.Image) -> FieldPictures:
    """The photograph's thumbnail and the cell crops of the field the model saw."""
    return FieldPictures(thumbnail=thumbnail_jpeg(image), cells=cell_crops(field_image))


def cell_model_pictures(image: Image.Image, cells: FieldCells) -> FieldPictures:
    """A cell model's field: the photograph's thumbnail and each leukocyte the model reads,
    as it reads it (one physical size, the photograph's own colours, the model's pixels);
    in the order of the model's cells."""
    to_upload = photograph_size(image)[0] / image.width
    crops = []
    for index, (found, picture) in enumerate(zip(cells.used, cells.pictures, strict=True), 1):
        box = [round(v * to_upload) for v in cells.photo_box(found)]
        crops.append(CellPicture(index=index, box=box, jpeg=gallery_jpeg(picture)))
    return FieldPictures(thumbnail=thumbnail_jpeg(image), cells=crops)


def prediction_pictures(p: Prediction) -> FieldPictures:
    """The pictures of a prediction's field: a cell model's own cells, else the segmented."""
    image, field_image = p.pixels()
    if p.cells is not None and p.cells.source is not None:
        return cell_model_pictures(image, p.cells.source)
    return field_pictures(image, field_image)


def thumbnail_jpeg(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """The photograph within a ``side`` square, its aspect kept, as a JPEG file."""
    return jpeg_of(resized(_rgb(image), thumbnail_size(image.size, side)))


def thumbnail_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The size Pillow's ``Image.thumbnail`` gives an image of ``size`` in a ``side`` square."""
    width, height = size
    if width <= side and height <= side:
        return size
    aspect = width / height
    if aspect >= 1:
        candidates = (math.floor(side / aspect), math.ceil(side / aspect))
        return side, max(min(candidates, key=lambda n: abs(aspect - side / n) if n else 0), 1)
    candidates = (math.floor(side * aspect), math.ceil(side * aspect))
    return max(min(candidates, key=lambda n: abs(aspect - n / side)), 1), side


def cell_crops(field_image: Image.Image, limit: int = MAX_CELLS) -> list[CellPicture]:
    """The largest segmented leukocytes of the field, each cut out square with a margin."""
    found = segment(field_image, work_side=CELL_WORK_SIDE).cells
    cells = sorted(found, key=lambda c: c.area, reverse=True)[:limit]
    rgb = _rgb(field_image)
    crops = []
    for index, cell in enumerate(cells, start=1):
        x0, y0, x1, y1 = cell.bbox
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = max(x1 - x0, y1 - y0) * 0.5 * CELL_MARGIN
        left, top, right, bottom = (round(v) for v in (cx - half, cy - half, cx + half, cy + half))
        crop = gallery_jpeg(_window(rgb, left, top, right, bottom))
        crops.append(CellPicture(index=index, box=[left, top, right, bottom], jpeg=crop))
    return crops


def gallery_jpeg(crop: np.ndarray) -> bytes:
    """A cell's crop as the gallery keeps it: its own pixels, shrunk (aspect kept) only when
    its long side is over CELL_SIDE; enlarging them would add bytes and time, not detail.
    A few dozen pixels across, so every pixel keeps its colour and the quality is high."""
    height, width = crop.shape[:2]
    scale = CELL_SIDE / max(width, height, 1)
    if scale < 1:
        crop = resized(crop, (max(1, round(width * scale)), max(1, round(height * scale))))
    return jpeg_of(crop, quality=CROP_QUALITY, full_colour=True)


def _rgb(image: Image.Image) -> np.ndarray:
    return pixels(image) if image.mode == "RGB" else np.asarray(image.convert("RGB"))


def _window(rgb: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
    """``rgb[top:bottom, left:right]``, black where the window leaves the image (as Pillow's
    ``crop``)."""
    height, width = rgb.shape[:2]
    inner = rgb[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    pads = (max(0, -top), max(0, bottom - height), max(0, -left), max(0, right - width))
    if not any(pads):
        return inner
    if inner.size == 0:
        return np.zeros((bottom - top, right - left, 3), np.uint8)
    return cv2.copyMakeBorder(inner, *pads, cv2.BORDER_CONSTANT, value=0)
