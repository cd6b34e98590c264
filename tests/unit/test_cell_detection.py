"""The leukocyte finder's evaluation: reference objects from ``segmented/``, the matching
rules, the counts per field and per class, on synthetic smears; and on real files."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.cell_detection import (
    Detections,
    HandField,
    PointReference,
    Tally,
    add_up,
    detect,
    evaluate,
    match_points,
    match_regions,
    reference_objects,
    tally,
)
from training.cli import main as cli_main

BACKGROUND = (240, 232, 232)
RED_CELL = (215, 150, 160)
VIOLET = (110, 60, 170)  # a Wright-Giemsa stained leukocyte
KEPT = (230, 120, 200)  # the colour segmented/ keeps a leukocyte in
RBC = 24  # red-cell diameter of the synthetic fields, pixels

Disc = tuple[float, float, float]


def smear(cells: list[Disc], size: int = 224, seed: int = 0) -> Image.Image:
    """Violet (x, y, radius) leukocytes among a grid of pale red cells on a light field."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for cy in np.arange(RBC / 2, size, 1.3 * RBC):
        for cx in np.arange(RBC / 2, size, 1.3 * RBC):
            x, y = cx + rng.uniform(-2, 2), cy + rng.uniform(-2, 2)
            if any(np.hypot(x - a, y - b) < r + RBC / 2 + 2 for a, b, r in cells):
                continue
            draw.ellipse((x - RBC / 2, y - RBC / 2, x + RBC / 2, y + RBC / 2), fill=RED_CELL)
    for x, y, r in cells:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=VIOLET)
    return image


def segmented(cells: list[Disc], size: int = 224) -> Image.Image:
    """What segmented/ holds: the given discs kept, everything else black."""
    image = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for x, y, r in cells:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=KEPT)
    return image


def test_reference_objects_drop_speckle_and_outlines_and_mark_cut_cells() -> None:
    image = segmented([(60, 60, 15), (150, 150, 14), (0, 120, 15)])
    draw = ImageDraw.Draw(image)
    draw.ellipse((130, 20, 160, 50), outline=KEPT, width=1)  # a red cell's outline
    pixels = np.array(image)
    pixels[200, 30] = pixels[10, 200] = KEPT  # speckle
    pixels[60, 58:62] = 0  # dark grain inside a kept nucleus
    ref = reference_objects(pixels, rbc_px=RBC)
    assert ref.labels.max() == 3
    assert len(ref.whole) == 2
    assert ref.labels[60, 60] in ref.whole
    assert ref.labels[150, 150] in ref.whole
    assert ref.cut[ref.labels[120, 3]]
    assert ref.labels[20, 145] == 0
    assert ref.labels[200, 30] == 0


def test_reference_objects_below_the_detectors_floor_are_dropped() -> None:
    # 0.2 red-cell discs at RBC = 24 is 90 pixels: a 4-pixel radius disc (50) is debris.
    ref = reference_objects(np.array(segmented([(50, 50, 4), (150, 150, 8)])), rbc_px=RBC)
    assert ref.labels[50, 50] == 0
    assert ref.labels[150, 150] > 0


def test_match_regions_widens_objects_by_the_margin_and_takes_the_nearest() -> None:
    labels = np.zeros((100, 100), np.int32)
    labels[20:40, 20:40] = 1
    labels[20:40, 50:70] = 2
    centres = [(30.5, 30.5), (42.5, 30.5), (45.0, 30.5), (47.5, 30.5), (90.0, 90.0)]
    # x 42.5 is pixel 42, 3 from object 1; 45 is 6 from both; 47.5 is 3 from object 2.
    assert match_regions(centres, labels, margin_px=4) == [1, 1, 0, 2, 0]
    assert match_regions(centres, np.zeros_like(labels), margin_px=4) == [0] * 5
    assert match_regions([], labels, margin_px=4) == []


def test_match_points_takes_the_nearest_point_within_the_radius() -> None:
    points = [(10.0, 10.0), (30.0, 10.0)]
    found = match_points([(12.0, 10.0), (24.0, 10.0), (20.0, 30.0)], points, radius_px=8)
    assert found == [1, 2, 0]
    assert match_points([(1.0, 1.0)], [], radius_px=8) == [0]


def _detections(
    used: list[tuple[float, float]], left_out: Sequence[tuple[tuple[float, float], str]] = ()
) -> Detections:
    return Detections(float(RBC), used, list(left_out))


def test_tally_against_segmented_counts_found_split_cut_and_why_missed() -> None:
    ref = reference_objects(
        np.array(segmented([(40, 40, 12), (120, 40, 12), (180, 140, 12), (100, 222, 12)])), RBC
    )
    found = _detections(
        # two pieces of the first cell, one cell on the cut object, one on nothing
        [(36.0, 40.0), (46.0, 40.0), (100.0, 215.0), (150.0, 100.0)],
        # the third cell was found but left out as a clump
        left_out=[((181.0, 139.0), "clump")],
    )
    one = tally(found, ref)
    assert (one.reference, one.found, one.split) == (3, 1, 1)
    assert (one.used, one.matched, one.on_cut) == (4, 3, 1)
    assert one.missed == {"clump": 1, "not_found": 1}
    summary = one.summary()
    assert summary["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["precision"] == pytest.approx(3 / 4)


def test_tally_against_hand_labels_counts_cut_against_and_leaves_doubtful_out() -> None:
    labelled = HandField(
        "Benign/x.png",
        whole=[(40.0, 40.0), (120.0, 40.0)],
        cut=[(2.0, 100.0)],
        doubtful=[(150.0, 150.0)],
    )
    found = _detections([(42.0, 41.0), (4.0, 100.0), (151.0, 149.0), (200.0, 200.0)])
    one = tally(found, PointReference(labelled, radius_px=12))
    assert (one.reference, one.found, one.used) == (2, 1, 4)
    assert (one.matched, one.on_cut, one.on_doubtful) == (1, 1, 1)
    assert one.missed == {"not_found": 1}
    summary = one.summary(intervals=True)
    assert summary["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["recall"] == 0.5
    low, high = summary["recall_ci95"]
    assert 0 < low < 0.5 < high < 1


def test_a_reference_of_cut_cells_only_is_not_empty() -> None:
    ref = reference_objects(np.array(segmented([(100, 222, 12)])), RBC)
    one = tally(_detections([(100.0, 215.0), (50.0, 50.0)]), ref)
    assert (one.reference_empty, one.reference, one.matched, one.on_cut) == (0, 0, 1, 1)
    assert one.summary()["precision_reference_not_empty"] == 0.5
    black = tally(_detections([(50.0, 50.0)]), reference_objects(np.zeros((224, 224, 3)), RBC))
    assert (black.reference_empty, black.used_reference_empty) == (1, 1)


def test_tallies_add_up_and_empty_references_are_set_apart() -> None:
    full = Tally(fields=1, reference=4, found=3, used=5, matched=4, missed={"border": 1})
    empty = Tally(fields=1, reference_empty=1, used=3, used_reference_empty=3)
    total = add_up([full, empty, Tally(fields=1, unmeasurable=1, reference=2, missed={"x": 0})])
    assert (total.fields, total.reference, total.used, total.unmeasurable) == (3, 6, 8, 1)
    summary = total.summary()
    assert summary["recall"] == 0.5
    assert summary["precision"] == 0.5
    assert summary["precision_reference_not_empty"] == 0.8
    assert summary["missed"] == {"border": 1}
    assert Tally().summary()["recall"] is None


def test_detect_maps_the_cells_back_to_the_photographs_pixels() -> None:
    # At 448 pixels the red cells measure 48: the detector works at half size.
    cells = [(120.0, 120.0, 30.0), (300.0, 160.0, 28.0), (200.0, 330.0, 32.0)]
    found = detect(smear([(x / 2, y / 2, r / 2) for x, y, r in cells]).resize((448, 448)))
    assert found.measured
    assert found.rbc_px == pytest.approx(2 * RBC, rel=0.15)
    assert len(found.used) == 3
    for x, y, _ in cells:
        assert min(np.hypot(x - u, y - v) for u, v in found.used) < 4


def _write_field(root: Path, folder: str, name: str, cells: list[Disc], kept: list[Disc]) -> None:
    for part, image in (("original", smear(cells)), ("segmented", segmented(kept))):
        (root / part / folder).mkdir(parents=True, exist_ok=True)
        image.save(root / part / folder / name)


@pytest.fixture
def synthetic_set(tmp_path: Path) -> Path:
    """One synthetic field per class, each with its own failure of the reference."""
    root = tmp_path / "set"
    cells = [(60.0, 60.0, 15.0), (150.0, 80.0, 14.0), (100.0, 160.0, 16.0)]
    border = (0.0, 120.0, 15.0)
    platelet = (190.0, 190.0, 5.0)
    # Benign: the reference keeps every cell, the cut one too.
    _write_field(root, "Benign", "b-001.png", [*cells, border, platelet], [*cells, border])
    # Early: the reference is black.
    _write_field(root, "Early", "e-001.png", cells, [])
    # Pre: the reference misses a cell.
    _write_field(root, "Pre", "p-001.png", cells, cells[:2])
    # Pro: the reference holds an object where there is no leukocyte.
    _write_field(root, "Pro", "r-001.png", cells, [*cells, (190.0, 190.0, 12.0)])
    return root


def _labels(path: Path) -> Path:
    document = {
        "labeller": "test",
        "date": "2026-01-01",
        "fields": [
            {
                "file": "Benign/b-001.png",
                "whole": [[60, 60], [150, 80], [100, 160]],
                "cut": [[3, 120]],
                "doubtful": [[190, 190]],
            }
        ],
    }
    path.write_text(json.dumps(document))
    return path


def test_evaluate_counts_per_class(synthetic_set: Path, tmp_path: Path) -> None:
    result = evaluate(synthetic_set, labels_path=_labels(tmp_path / "labels.json"))
    seg = result["segmented"]["per_class"]
    assert list(seg) == ["benign", "early_pre_b", "pre_b", "pro_b"]
    assert (seg["benign"]["recall"], seg["benign"]["precision"]) == (1.0, 1.0)
    assert seg["early_pre_b"]["reference_empty"] == 1
    assert seg["early_pre_b"]["precision"] == 0.0
    assert seg["early_pre_b"]["precision_reference_not_empty"] is None
    assert (seg["pre_b"]["recall"], seg["pre_b"]["precision"]) == (1.0, pytest.approx(2 / 3, 1e-3))
    assert seg["pro_b"]["recall"] == 0.75
    assert seg["pro_b"]["missed"] == {"not_found": 1}
    worst = result["segmented"]["worst"]
    assert worst["pre_b"] == [
        {"file": "Pre/p-001.png", "reference": 2, "found": 2, "used": 3, "matched": 2}
    ]
    assert "early_pre_b" not in worst  # an empty reference is no field to inspect
    assert result["segmented"]["all"]["used"] == 12
    exclusions = result["exclusions"]["per_class"]["benign"]
    assert exclusions["by_reason"]["border"] == 1
    assert exclusions["by_reason"]["too_small"] == 1
    assert exclusions["used"] == 3
    assert result["exclusions"]["all"]["excluded"] == 2
    hand = result["hand"]
    assert list(hand["per_class"]) == ["benign"]
    assert (hand["all"]["recall"], hand["all"]["precision"], hand["all"]["on_doubtful"]) == (
        1.0,
        1.0,
        0,
    )
    assert hand["fields"][0]["excluded"] == {"border": 1, "too_small": 1}


def test_evaluate_takes_every_nth_file_of_each_class(synthetic_set: Path) -> None:
    _write_field(synthetic_set, "Benign", "b-002.png", [(100.0, 100.0, 15.0)], [])
    _write_field(synthetic_set, "Benign", "b-003.png", [(100.0, 100.0, 15.0)], [])
    every_other = evaluate(synthetic_set, every=2, labels_path=None)
    assert every_other["segmented"]["per_class"]["benign"]["fields"] == 2  # b-001 and b-003
    assert every_other["segmented"]["per_class"]["pro_b"]["fields"] == 1
    assert "hand" not in every_other
    with pytest.raises(ValueError, match="every must be 1 or more"):
        evaluate(synthetic_set, every=0)


def test_cli_writes_the_result_and_prints_tables(
    synthetic_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "cell_detection.json"
    labels = _labels(tmp_path / "labels.json")
    args = ["cell-detection", "--data-dir", str(synthetic_set), "--labels", str(labels)]
    assert cli_main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "### Against the data set's segmentation" in printed
    assert "| Benign (hematogones) | 1 | 0 | 3 | 3 | 100.0% |" in printed
    assert "### Against the hand labels (1 photographs)" in printed
    assert json.loads(out.read_text())["segmented"]["all"]["fields"] == 4


@pytest.mark.data
def test_on_real_photographs(data_dir: Path) -> None:
    # Every 200th photograph of each class and the 16 hand-labelled ones.
    result = evaluate(data_dir, every=200)
    per_class = [len(list((data_dir / c).glob("*.jpg"))) for c in ("Benign", "Early", "Pre", "Pro")]
    assert result["segmented"]["all"]["fields"] == sum(math.ceil(n / 200) for n in per_class)
    # Measured on all photographs (docs/decisions.md): floors with room for 16 fields.
    assert result["hand"]["all"]["recall"] >= 0.9
    assert result["hand"]["all"]["precision"] >= 0.9
    assert result["exclusions"]["all"]["by_reason"]["border"] > 0
