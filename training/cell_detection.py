"""How well the cell path finds a field's leukocytes: recall and precision against the
data set's own segmentation (``segmented/``) and against hand labels.

The detector is the cell path's own reading of a photograph: ``measure_cells``, then
``read_field`` at that scale. Its detections are the cells it uses (``FieldCells.used``),
their centres brought back to the photograph's pixels by dividing by ``FieldCells.factor``
(as ``FieldCells.photo_box`` does). Objects it leaves out are counted by reason.

The two references:

- ``segmented/`` is the data set's colour-threshold segmentation: a noisy reference, not a
  truth. It misses whole fields (a black image), keeps red-cell outlines on some stains
  and merges touching cells into one object. Its objects: the non-black pixels
  (``REFERENCE_BLACK``), a ``CLEANUP_WINDOW`` majority filter (drops speckle and the thin
  red-cell outlines), holes filled, then the connected components of at least
  ``MIN_AREA_RBC`` red-cell discs at the photograph's measured scale (the detector's own
  floor). A component that touches the photograph's edge is a cut cell.
- the hand labels (``training/labels/hand_cells.json``, protocol in ``docs/cell_labels.md``)
  give the centre of every whole leukocyte of 16 photographs, the cut ones and the
  doubtful objects.

Matching: a used cell matches the reference object its centre lies in, the object widened
by ``REGION_MARGIN_RBC`` red-cell diameters (the nearest one where widened objects
overlap); a hand-labelled cell is the disc of ``POINT_RADIUS_RBC`` red-cell diameters
around its centre (the nearest one). Recall: whole reference cells matched by at least one
used cell, over the whole reference cells (the detector should leave cut cells out).
Precision: matched used cells over the used cells. Against ``segmented/`` a used cell in a
cut object is matched (touching cells share one object there, so "cut" says little);
against the hand labels it is not (the crop of a cut cell is an error), and used cells on
a doubtful object are left out. Used cells on cut cells and reference cells matched more
than once (a cell split in two, or touching cells merged by the reference) are reported,
and precision is also given without the fields whose reference holds no object at all
(a black ``segmented/`` image measures the reference, not the detector).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from app.core.cells.crops import MAX_CELLS, read_field
from app.core.cells.detect import MIN_AREA_RBC
from app.core.cells.exclusions import EXCLUSION_REASONS
from app.core.classes import CLASS_IDS, DISPLAY_NAMES
from app.core.errors import ImageDecodeError, ImageTooLargeError
from app.core.preprocessing import load_image
from app.core.scale import measure_cells
from training.data import (
    DataSetError,
    class_id_for_folder,
    discover,
    resolve_image_root,
)
from training.markdown import table
from training.metrics import wilson
from training.paths import LABELS_PATH
from training.progress import track
from training.segmentation_eval import REFERENCE_BLACK, SEGMENTED_FOLDER

# Widening of a reference object, in red-cell diameters: the two masks' edges differ by pixels.
REGION_MARGIN_RBC = 0.25
# A hand-labelled cell is a disc of this radius (red-cell diameters), inside the smallest leukocyte.
POINT_RADIUS_RBC = 0.5
# Side of the majority filter that cleans the reference (pixels of a 224-pixel photograph).
CLEANUP_WINDOW = 5
# Red-cell size for a photograph whose scale cannot be measured: the training photographs'.
FALLBACK_RBC_PX = 24.0
# Why a cell of a reference was missed: the detector left its object out, or found none.
MISS_REASONS = (*EXCLUSION_REASONS, "over_cap", "not_found")
# Fields per class listed with their counts where the used cells agree least with segmented/.
N_WORST = 5

Point = tuple[float, float]
Kind = Literal["whole", "cut", "doubtful"]
Match = tuple[Kind, int] | None


@dataclass(frozen=True)
class Detections:
    """The cell path's reading of one photograph, in the photograph's pixels.

    ``used``: the centres of the cells it classifies; ``left_out``: every other object's
    centre and why (an exclusion reason, or ``over_cap`` beyond ``MAX_CELLS``).
    """

    rbc_px: float
    used: list[Point]
    left_out: list[tuple[Point, str]]
    measured: bool = True

    @property
    def excluded(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason in self.left_out))


def detect(image: Image.Image) -> Detections:
    """Find the leukocytes of ``image`` as the cell path does; none where the scale is
    unmeasurable (the app refuses such a field)."""
    measured = measure_cells(image)
    if measured.size_px is None:
        return Detections(FALLBACK_RBC_PX, [], [], measured=False)
    cells = read_field(image, measured.size_px)
    used = cells.used
    taken = {id(cell) for cell in used}

    def in_photo(centre: Point) -> Point:
        return centre[0] / cells.factor, centre[1] / cells.factor

    left_out: list[tuple[Point, str]] = [
        (in_photo(c.centre), c.excluded or "over_cap") for c in cells.found if id(c) not in taken
    ]
    return Detections(measured.size_px, [in_photo(c.centre) for c in used], left_out)


@dataclass(frozen=True)
class RegionReference:
    """Reference objects as a label image (0: background) and which of them are cut."""

    labels: np.ndarray
    cut: np.ndarray
    margin_px: float
    # Touching cells share one object, so a whole cell beside a cut one lies in a cut object.
    cut_matches: bool = True

    @property
    def whole(self) -> list[int]:
        return [i for i in range(1, len(self.cut)) if not self.cut[i]]

    @property
    def empty(self) -> bool:
        return len(self.cut) == 1

    def match(self, centres: Sequence[Point]) -> list[Match]:
        found = match_regions(centres, self.labels, self.margin_px)
        return [None if i == 0 else ("cut" if self.cut[i] else "whole", i) for i in found]


def reference_objects(segmented: np.ndarray, rbc_px: float) -> RegionReference:
    """The leukocytes of a ``segmented/`` image (H x W x 3, uint8) whose photograph's red
    cells measure ``rbc_px`` pixels."""
    kept = np.asarray(segmented).max(axis=2) > REFERENCE_BLACK
    majority = ndi.uniform_filter(kept.astype(np.float32), CLEANUP_WINDOW) > 0.5
    filled = ndi.binary_fill_holes(majority)
    labels, n = ndi.label(filled)
    areas = np.asarray(ndi.sum_labels(filled, labels, np.arange(1, n + 1)))
    big = np.concatenate([[False], areas >= MIN_AREA_RBC * np.pi / 4 * rbc_px**2])
    labels, n = ndi.label(big[labels])
    cut = np.zeros(n + 1, bool)
    cut[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    cut[0] = False
    return RegionReference(labels, cut, REGION_MARGIN_RBC * rbc_px)


def match_regions(centres: Sequence[Point], labels: np.ndarray, margin_px: float) -> list[int]:
    """The object (label id) each (x, y) centre lies in, the objects widened by
    ``margin_px`` (the nearest object where widened ones overlap); 0: none."""
    if not len(centres) or not labels.any():
        return [0] * len(centres)
    distance, (rows, cols) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    height, width = labels.shape
    found = []
    for x, y in centres:
        r, c = min(max(int(y), 0), height - 1), min(max(int(x), 0), width - 1)
        near = distance[r, c] <= margin_px
        found.append(int(labels[rows[r, c], cols[r, c]]) if near else 0)
    return found


def match_points(centres: Sequence[Point], points: Sequence[Point], radius_px: float) -> list[int]:
    """The nearest point (its index + 1) within ``radius_px`` of each centre; 0: none."""
    if not len(centres) or not len(points):
        return [0] * len(centres)
    offsets = np.asarray(centres, float)[:, None, :] - np.asarray(points, float)[None, :, :]
    gaps = np.linalg.norm(offsets, axis=2)
    nearest = gaps.argmin(axis=1)
    return [int(i) + 1 if gaps[k, i] <= radius_px else 0 for k, i in enumerate(nearest)]


@dataclass(frozen=True)
class HandField:
    """One hand-labelled photograph: ``file`` relative to ``original/``, centres in its pixels."""

    file: str
    whole: list[Point]
    cut: list[Point]
    doubtful: list[Point]

    @property
    def class_id(self) -> str:
        return class_id_for_folder(Path(self.file).parts[0])


@dataclass(frozen=True)
class PointReference:
    """Hand-labelled centres, each a disc of ``radius_px``."""

    labelled: HandField
    radius_px: float
    # A used cell on a cell the labeller saw cut is a partial crop: an error.
    cut_matches: bool = False

    @property
    def whole(self) -> list[int]:
        return list(range(len(self.labelled.whole)))

    @property
    def empty(self) -> bool:
        return not (self.labelled.whole or self.labelled.cut or self.labelled.doubtful)

    def match(self, centres: Sequence[Point]) -> list[Match]:
        kinds: list[tuple[Kind, list[Point]]] = [
            ("whole", self.labelled.whole),
            ("cut", self.labelled.cut),
            ("doubtful", self.labelled.doubtful),
        ]
        flat = [(kind, i) for kind, points in kinds for i in range(len(points))]
        points = [p for _, points in kinds for p in points]
        found = match_points(centres, points, self.radius_px)
        return [None if k == 0 else flat[k - 1] for k in found]


def load_labels(path: str | Path = LABELS_PATH) -> tuple[dict[str, Any], list[HandField]]:
    """The hand labels' description (labeller, date, protocol) and their fields."""
    document = json.loads(Path(path).read_text())
    labelled = [
        HandField(
            item["file"],
            *(
                [(float(x), float(y)) for x, y in item[kind]]
                for kind in ("whole", "cut", "doubtful")
            ),
        )
        for item in document["fields"]
    ]
    return {k: v for k, v in document.items() if k != "fields"}, labelled


@dataclass(frozen=True)
class Tally:
    """Counts of one field or many against one reference; ``+`` adds them up."""

    fields: int = 0
    unmeasurable: int = 0
    reference_empty: int = 0
    reference: int = 0
    found: int = 0
    split: int = 0
    used: int = 0
    matched: int = 0
    on_cut: int = 0
    on_doubtful: int = 0
    used_reference_empty: int = 0
    missed: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Tally) -> Tally:
        names = [f.name for f in fields(self) if f.name != "missed"]
        counts = {name: getattr(self, name) + getattr(other, name) for name in names}
        missed = Counter(self.missed) + Counter(other.missed)
        return Tally(**counts, missed={r: missed[r] for r in MISS_REASONS if missed[r]})

    def summary(self, intervals: bool = False) -> dict[str, Any]:
        """The counts, recall and precision (None where nothing was counted); with
        ``intervals``, their Wilson 95% intervals (cells of one field are not independent,
        so these are narrower than the truth)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        judged = self.used - self.on_doubtful
        judged_not_empty = judged - self.used_reference_empty
        out["recall"] = _ratio(self.found, self.reference)
        out["precision"] = _ratio(self.matched, judged)
        out["precision_reference_not_empty"] = _ratio(self.matched, judged_not_empty)
        if intervals:
            out["recall_ci95"] = [round(v, 4) for v in wilson(self.found, self.reference)]
            out["precision_ci95"] = [round(v, 4) for v in wilson(self.matched, judged)]
        return out


def _ratio(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def tally(found: Detections, reference: RegionReference | PointReference) -> Tally:
    """One field's detections counted against one reference."""
    whole = reference.whole
    hits = reference.match(found.used)
    per_cell = Counter(m[1] for m in hits if m is not None and m[0] == "whole")
    kinds = Counter(m[0] for m in hits if m is not None)
    missed: Counter[str] = Counter()
    if len(per_cell) < len(whole):
        why: dict[int, str] = {}
        left_out = reference.match([centre for centre, _ in found.left_out])
        for m, (_, reason) in zip(left_out, found.left_out, strict=True):
            if m is not None and m[0] == "whole":
                why.setdefault(m[1], reason)
        missed.update(why.get(i, "not_found") for i in whole if i not in per_cell)
    empty = reference.empty
    return Tally(
        fields=1,
        unmeasurable=int(not found.measured),
        reference_empty=int(empty),
        reference=len(whole),
        found=len(per_cell),
        split=sum(n > 1 for n in per_cell.values()),
        used=len(found.used),
        matched=kinds["whole"] + (kinds["cut"] if reference.cut_matches else 0),
        on_cut=kinds["cut"],
        on_doubtful=kinds["doubtful"],
        used_reference_empty=len(found.used) - kinds["doubtful"] if empty else 0,
        missed={r: missed[r] for r in MISS_REASONS if missed[r]},
    )


def add_up(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for one in tallies:
        total = total + one
    return total


@dataclass(frozen=True)
class Exclusions:
    """How many objects the detector found, used and left out (by reason) over fields."""

    fields: int = 0
    measured: int = 0
    objects: int = 0
    used: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, found: Detections) -> Exclusions:
        left = found.excluded
        return cls(
            1, int(found.measured), len(found.used) + sum(left.values()), len(found.used), left
        )

    def __add__(self, other: Exclusions) -> Exclusions:
        reasons = Counter(self.by_reason) + Counter(other.by_reason)
        return replace(
            self,
            fields=self.fields + other.fields,
            measured=self.measured + other.measured,
            objects=self.objects + other.objects,
            used=self.used + other.used,
            by_reason={r: reasons[r] for r in (*EXCLUSION_REASONS, "over_cap")},
        )

    def summary(self) -> dict[str, Any]:
        per_field = max(self.measured, 1)
        return {
            "fields": self.fields,
            "unmeasurable": self.fields - self.measured,
            "objects": self.objects,
            "used": self.used,
            "excluded": sum(self.by_reason.values()),
            "by_reason": dict(self.by_reason),
            "per_measured_field": {
                "objects": round(self.objects / per_field, 2),
                "used": round(self.used / per_field, 2),
                **{r: round(n / per_field, 2) for r, n in self.by_reason.items()},
            },
        }


def _read(path: Path) -> Image.Image:
    try:
        return load_image(path)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        raise DataSetError(f"unreadable image {str(path)!r}: {exc}") from exc


def evaluate(
    data_dir: str | Path, every: int = 1, labels_path: str | Path | None = LABELS_PATH
) -> dict[str, Any]:
    """The detector against ``segmented/`` on every ``every``-th photograph of each class
    (sorted by name), its exclusions on the same photographs, and the hand labels."""
    if every < 1:
        raise ValueError(f"every must be 1 or more, not {every}")
    originals = resolve_image_root(data_dir)
    segmented = originals.parent / SEGMENTED_FOLDER
    if not segmented.is_dir():
        raise DataSetError(f"no {SEGMENTED_FOLDER}/ folder next to {str(originals)!r}")
    samples = discover(data_dir)
    chosen = [s for c in CLASS_IDS for s in [x for x in samples if x.class_id == c][::every]]
    seg: dict[str, Tally] = {}
    left: dict[str, Exclusions] = {}
    no_reference = Counter[str]()
    rows: dict[str, list[dict[str, Any]]] = {}
    for sample in track(chosen, f"finding the cells of {len(chosen)} photographs"):
        photograph = _read(sample.path)
        found = detect(photograph)
        left[sample.class_id] = left.get(sample.class_id, Exclusions()) + Exclusions.of(found)
        mask_path = segmented / sample.path.relative_to(originals)
        if not mask_path.is_file():
            no_reference[sample.class_id] += 1
            continue
        mask = np.asarray(_read(mask_path))
        if mask.shape[:2] != (photograph.height, photograph.width):
            raise DataSetError(f"{mask_path} and its photograph differ in size")
        one = tally(found, reference_objects(mask, found.rbc_px))
        seg[sample.class_id] = seg.get(sample.class_id, Tally()) + one
        if one.reference and one.used:
            rows.setdefault(sample.class_id, []).append(
                {"file": sample.path.relative_to(originals).as_posix()}
                | {k: getattr(one, k) for k in ("reference", "found", "used", "matched")}
            )
    result: dict[str, Any] = {
        "command": "python -m training cell-detection" + (f" --every {every}" if every > 1 else ""),
        "every": every,
        "rules": _rules(),
        "segmented": {
            "per_class": {c: t.summary() for c, t in seg.items()},
            "all": add_up(seg.values()).summary(),
            "fields_without_reference": dict(no_reference),
            # Lowest precision where the reference is not empty, for inspection.
            "worst": {
                c: sorted(r, key=lambda row: (row["matched"] / row["used"], -row["used"]))[:N_WORST]
                for c, r in rows.items()
            },
        },
        "exclusions": {
            "per_class": {c: e.summary() for c, e in left.items()},
            "all": sum(left.values(), Exclusions()).summary(),
        },
    }
    if labels_path is not None:
        result["hand"] = evaluate_hand(originals, labels_path)
    return result


def evaluate_hand(originals: Path, labels_path: str | Path = LABELS_PATH) -> dict[str, Any]:
    """The detector against the hand labels, per class and per field."""
    about, labelled = load_labels(labels_path)
    per_class: dict[str, Tally] = {}
    rows = []
    for item in labelled:
        path = originals / item.file
        if not path.is_file():
            raise DataSetError(f"the hand-labelled photograph {item.file} is not in {originals}")
        found = detect(_read(path))
        one = tally(found, PointReference(item, POINT_RADIUS_RBC * found.rbc_px))
        per_class[item.class_id] = per_class.get(item.class_id, Tally()) + one
        rows.append(_hand_row(item, found, one))
    ordered = [c for c in CLASS_IDS if c in per_class]
    return {
        "labels": about,
        "per_class": {c: per_class[c].summary(intervals=True) for c in ordered},
        "all": add_up(per_class.values()).summary(intervals=True),
        "fields": rows,
    }


def _hand_row(item: HandField, found: Detections, one: Tally) -> dict[str, Any]:
    reference = PointReference(item, POINT_RADIUS_RBC * found.rbc_px)
    hits = reference.match(found.used)
    hit = {m[1] for m in hits if m is not None and m[0] == "whole"}
    return {
        "file": item.file,
        "rbc_px": round(found.rbc_px, 2),
        "whole": len(item.whole),
        "cut": len(item.cut),
        "doubtful": len(item.doubtful),
        "used": one.used,
        "found": one.found,
        "matched": one.matched,
        "on_cut": one.on_cut,
        "on_doubtful": one.on_doubtful,
        "missed": one.missed,
        "missed_at": [list(p) for i, p in enumerate(item.whole) if i not in hit],
        "unmatched_used_at": [
            [round(x, 1), round(y, 1)]
            for (x, y), m in zip(found.used, hits, strict=True)
            if m is None
        ],
        "excluded": found.excluded,
    }


def _rules() -> dict[str, Any]:
    return {
        "detections": "FieldCells.used of read_field at the scale measure_cells gives; centres "
        "divided by FieldCells.factor",
        "segmented_reference": f"pixels whose brightest channel exceeds {REFERENCE_BLACK}, a "
        f"{CLEANUP_WINDOW}x{CLEANUP_WINDOW} majority filter, holes filled, connected components "
        f"of at least {MIN_AREA_RBC} red-cell discs; touching the edge: cut",
        "segmented_match": f"a used cell's centre inside the object widened by "
        f"{REGION_MARGIN_RBC} red-cell diameters (the nearest object)",
        "hand_match": f"a used cell's centre within {POINT_RADIUS_RBC} red-cell diameters of "
        "the labelled centre (the nearest label)",
        "recall": "whole reference cells matched by at least one used cell / whole reference cells",
        "precision": "matched used cells / used cells; segmented: a used cell in a cut object "
        "is matched; hand: a used cell on a cut cell is not, those on doubtful objects are "
        "left out",
        "max_cells": MAX_CELLS,
        "fallback_rbc_px": FALLBACK_RBC_PX,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _name(class_id: str) -> str:
    return DISPLAY_NAMES.get(class_id, class_id)


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables: ``segmented/``, hand labels, exclusions."""
    seg = result["segmented"]
    seg_rows = [
        [
            _name(c),
            s["fields"],
            s["reference_empty"],
            s["reference"],
            s["found"],
            _percent(s["recall"]),
            s["used"],
            s["matched"],
            _percent(s["precision"]),
            _percent(s["precision_reference_not_empty"]),
            s["on_cut"],
            s["split"],
        ]
        for c, s in [*seg["per_class"].items(), ("all", seg["all"])]
    ]
    lines = [
        "### Against the data set's segmentation (`segmented/`, a noisy reference)",
        "",
        table(
            [
                "class",
                "fields",
                "reference empty",
                "reference cells",
                "found",
                "recall",
                "used cells",
                "matched",
                "precision",
                "precision, reference not empty",
                "used on a cut cell",
                "matched twice or more",
            ],
            seg_rows,
            align=["left", *["right"] * 11],
        ),
    ]
    if "hand" in result:
        hand = result["hand"]
        lines += [
            "",
            f"### Against the hand labels ({len(hand['fields'])} photographs)",
            "",
            table(
                [
                    "class",
                    "fields",
                    "whole cells",
                    "found",
                    "recall (95% CI)",
                    "used cells",
                    "matched",
                    "precision (95% CI)",
                    "on a cut cell",
                    "on a doubtful object",
                    "missed: why",
                ],
                [
                    [
                        _name(c),
                        s["fields"],
                        s["reference"],
                        s["found"],
                        f"{_percent(s['recall'])} ({_interval(s['recall_ci95'])})",
                        s["used"],
                        s["matched"],
                        f"{_percent(s['precision'])} ({_interval(s['precision_ci95'])})",
                        s["on_cut"],
                        s["on_doubtful"],
                        ", ".join(f"{r} {n}" for r, n in s["missed"].items()) or "-",
                    ]
                    for c, s in [*hand["per_class"].items(), ("all", hand["all"])]
                ],
                align=["left", *["right"] * 9, "left"],
            ),
        ]
    reasons = (*EXCLUSION_REASONS, "over_cap")
    exclusions = result["exclusions"]
    lines += [
        "",
        "### Objects left out (total, and per measured field)",
        "",
        table(
            ["class", "fields", "unmeasurable", "objects", "used", *reasons],
            [
                [
                    _name(c),
                    e["fields"],
                    e["unmeasurable"],
                    e["objects"],
                    f"{e['used']} ({e['per_measured_field']['used']})",
                    *(f"{e['by_reason'][r]} ({e['per_measured_field'][r]})" for r in reasons),
                ]
                for c, e in [*exclusions["per_class"].items(), ("all", exclusions["all"])]
            ],
            align=["left", *["right"] * (4 + len(reasons))],
        ),
    ]
    return "\n".join(lines)


def _interval(bounds: Sequence[float]) -> str:
    return f"{100 * bounds[0]:.0f}-{100 * bounds[1]:.0f}%"
