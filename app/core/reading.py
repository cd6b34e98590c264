"""One photograph read for a model: decoded and prepared (or its leukocytes read), on an
image thread or in an image process (``app.core.image_processes``).

A photograph read in a process comes back without its pixels: its guard statistics and its
pictures are made there (``made``, a ``pipeline.Measured``), the model's network has run on
it there when the process could open it (``ran``, ``app.core.lite_network``), and its model
input travels as the 8-bit values it was made of. Nothing here loads TensorFlow, so the
image processes start in a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import overload

import numpy as np
from PIL import Image

from app.core.cells.crops import FieldCells, read_photograph
from app.core.cells.stain import looked_up
from app.core.errors import AnalysisRefusedError, NoCellsError
from app.core.explanation.gallery import cell_model_pictures, field_pictures
from app.core.imaging import unit_floats
from app.core.lite_network import NetworkFile, NetworkRun, run_kept
from app.core.model_card import ScaleSpec
from app.core.pictures import FieldPictures
from app.core.pipeline import Measured, timed_statistics
from app.core.preprocessing import load_image, photograph_size, prepare, sniff_format
from app.core.scale import ScaleCheck


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000


@dataclass(frozen=True)
class DecodedImage:
    """One photograph decoded and prepared for a model of the whole field, with the time each
    step took. ``image`` (the upright photograph) and ``field_image`` (the square the model
    input is made of) are None when it was read in an image process, which made ``made``
    instead, and ``ran`` the network's outputs where it could (then ``x`` is empty)."""

    image_format: str
    photograph_size: tuple[int, int]
    x: np.ndarray = field(repr=False)
    scale: ScaleCheck | None
    decode_ms: float
    preprocess_ms: float
    image: Image.Image | None = field(default=None, repr=False)
    field_image: Image.Image | None = field(default=None, repr=False)
    made: Measured[FieldPictures] | None = None
    ran: NetworkRun | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DecodedCells:
    """One photograph decoded and its leukocytes read, with the time each step took.
    ``width``: the decoded image's (a big JPEG is decoded smaller than the photograph);
    ``image`` is None when it was read in an image process, which made ``made`` instead,
    and ``ran`` the network's outputs on its crops where it could (then its cells' crops
    and pictures are left out)."""

    image_format: str
    photograph_size: tuple[int, int]
    width: int
    cells: FieldCells
    decode_ms: float
    preprocess_ms: float
    image: Image.Image | None = field(default=None, repr=False)
    made: Measured[FieldPictures] | None = None
    ran: NetworkRun | None = field(default=None, repr=False)


def decode_field(data: bytes, input_size: int, scale: ScaleSpec | None) -> DecodedImage:
    """Decode an upload and make its model input; the preprocessing's errors when it cannot."""
    start = time.perf_counter()
    image_format = sniff_format(data)
    image = load_image(data)
    decoded = time.perf_counter()
    seen = prepare(image, input_size, scale)
    prepared = time.perf_counter()
    return DecodedImage(
        image_format,
        photograph_size(image),
        seen.x,
        seen.scale,
        _ms(start, decoded),
        _ms(decoded, prepared),
        image,
        seen.field,
    )


def decode_cells(data: bytes) -> DecodedCells:
    """Decode an upload and read its cells; CaptureError or NoCellsError when it cannot be."""
    start = time.perf_counter()
    image_format = sniff_format(data)
    image = load_image(data)
    decoded = time.perf_counter()
    cells = read_photograph(image)
    if not cells.used:
        left_out = sum(cells.excluded.values())
        raise NoCellsError(f"{left_out} objects were left out" if left_out else "none found")
    done = time.perf_counter()
    return DecodedCells(
        image_format,
        photograph_size(image),
        image.width,
        cells,
        _ms(start, decoded),
        _ms(decoded, done),
        image,
    )


def read_field(
    data: bytes,
    input_size: int,
    scale: ScaleSpec | None,
    guarded: bool,
    pictures: bool,
    network: NetworkFile | None = None,
) -> DecodedImage | AnalysisRefusedError:
    """``decode_field`` with its statistics and pictures made and the ``network`` run on it,
    as an image process sends it back: no pixels, the model input as 8-bit values
    (``arrived`` makes them floats again) unless the network ran."""
    return read_fields([data], input_size, scale, guarded, pictures, network)[0]


def read_fields(
    items: list[bytes],
    input_size: int,
    scale: ScaleSpec | None,
    guarded: bool,
    pictures: bool,
    network: NetworkFile | None = None,
) -> list[DecodedImage | AnalysisRefusedError]:
    """``read_field`` of each of a run of photographs; the network runs on them once they
    are all read, so its weights stay in the cache from one photograph to the next."""
    read = [_field_read(data, input_size, scale, guarded, pictures) for data in items]
    return [d if isinstance(d, AnalysisRefusedError) else _field_sent(d, network) for d in read]


def _field_read(
    data: bytes, input_size: int, scale: ScaleSpec | None, guarded: bool, pictures: bool
) -> DecodedImage | AnalysisRefusedError:
    try:
        d = decode_field(data, input_size, scale)
    except AnalysisRefusedError as exc:
        return exc
    assert d.image is not None
    assert d.field_image is not None
    stats, stats_ms = timed_statistics(d.field_image if guarded else None)
    made = Measured(stats, stats_ms, field_pictures(d.image, d.field_image) if pictures else None)
    return replace(d, image=None, field_image=None, made=made)


def _field_sent(d: DecodedImage, network: NetworkFile | None) -> DecodedImage:
    ran = run_kept(network, d.x[None])
    # Exact: each value is float32(v) / 255 of an 8-bit v (``imaging.unit_floats``); none
    # when the network ran here, as nothing in the serving process takes them then.
    sent = d.x if ran is None else d.x[:0]
    x8 = np.rint(sent * np.float32(255)).astype(np.uint8)
    return replace(d, x=x8, ran=ran)


def read_cells(
    data: bytes, guarded: bool, pictures: bool, network: NetworkFile | None = None
) -> DecodedCells | AnalysisRefusedError:
    """``decode_cells`` with its statistics and pictures made and the ``network`` run on its
    crops, as an image process sends it back: no pixels of the photograph."""
    return read_cells_of([data], guarded, pictures, network)[0]


def read_cells_of(
    items: list[bytes], guarded: bool, pictures: bool, network: NetworkFile | None = None
) -> list[DecodedCells | AnalysisRefusedError]:
    """``read_cells`` of each of a run of photographs; the network runs on their crops once
    they are all read, so its weights stay in the cache from one photograph to the next."""
    read = [_cells_read(data, guarded, pictures) for data in items]
    return [d if isinstance(d, AnalysisRefusedError) else _cells_sent(d, network) for d in read]


def _cells_read(data: bytes, guarded: bool, pictures: bool) -> DecodedCells | AnalysisRefusedError:
    try:
        d = decode_cells(data)
    except AnalysisRefusedError as exc:
        return exc
    assert d.image is not None
    stats, stats_ms = timed_statistics(d.image if guarded else None)
    made = Measured(stats, stats_ms, cell_model_pictures(d.image, d.cells) if pictures else None)
    return replace(d, image=None, made=made)


def _cells_sent(d: DecodedCells, network: NetworkFile | None) -> DecodedCells:
    ran = run_kept(network, d.cells.crops)
    # The crops are made again from the pictures and the stain's table (``arrived``): a
    # quarter of the bytes. Neither is sent where the network ran here.
    cells = replace(d.cells, crops=d.cells.crops[:0])
    if ran is not None:
        cells = replace(cells, pictures=cells.pictures[:0], stain=None)
    return replace(d, cells=cells, ran=ran)


@overload
def arrived(d: DecodedImage) -> DecodedImage: ...
@overload
def arrived(d: DecodedCells) -> DecodedCells: ...
def arrived(d: DecodedImage | DecodedCells) -> DecodedImage | DecodedCells:
    """A photograph read in an image process as the model takes it: its input in floats,
    its cells' crops made again; as it came where its process ran the network."""
    if d.ran is not None:
        return d
    if isinstance(d, DecodedImage):
        return replace(d, x=unit_floats(d.x)) if d.x.dtype == np.uint8 else d
    cells = d.cells
    if len(cells.crops) == len(cells.pictures):
        return d
    if cells.stain is None:  # read_cells sends the table whenever it leaves the crops out
        raise ValueError("cells sent without their crops or the stain's table")
    return replace(d, cells=replace(cells, crops=looked_up(cells.stain, cells.pictures)))


def pictures_of(d: DecodedImage | DecodedCells) -> FieldPictures:
    """A photograph's thumbnail and cell crops: as its image process made them, else made
    now from its pixels."""
    if d.made is not None and d.made.extra is not None:
        return d.made.extra
    if d.image is None:
        raise ValueError("this photograph was read in an image process without its pictures")
    if isinstance(d, DecodedCells):
        return cell_model_pictures(d.image, d.cells)
    assert d.field_image is not None  # decoded here, with its image
    return field_pictures(d.image, d.field_image)
