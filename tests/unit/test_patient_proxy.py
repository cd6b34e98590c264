"""Patient-proxy folds: contiguous blocks of file numbers per class, and the report section."""

from __future__ import annotations

import json
from pathlib import Path

from training.data import Sample
from training.file_numbers import contiguous_folds, file_number, random_folds
from training.patient_proxy import FoldResult, patient_proxy_markdown


def samples() -> list[Sample]:
    out = []
    for class_id, folder in (("benign", "Benign"), ("pre_b", "Pre")):
        for n in (10, 2, 7, 1, 4, 3, 9, 5, 8, 6):
            path = Path(f"/data/{folder}/WBC-{folder}-{n:03d}.jpg")
            out.append(Sample(path=path, class_id=class_id, sha256=f"{class_id}{n}"))
    return out


def test_file_numbers_come_from_the_name() -> None:
    assert [file_number(s) for s in samples()[:3]] == [10, 2, 7]


def test_contiguous_folds_hold_neighbouring_numbers_of_every_class() -> None:
    folds = contiguous_folds(samples(), 5)
    assert [sorted(file_number(s) for s in f if s.class_id == "benign") for f in folds] == [
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
        [9, 10],
    ]
    assert all({s.class_id for s in f} == {"benign", "pre_b"} for f in folds)
    assert sorted(s.sha256 for f in folds for s in f) == sorted(s.sha256 for s in samples())


def test_random_folds_cover_every_image_once_and_mix_the_numbers() -> None:
    folds = random_folds(samples(), 5, seed=1)
    assert sorted(s.sha256 for f in folds for s in f) == sorted(s.sha256 for s in samples())
    assert [len(f) for f in folds] == [4] * 5
    assert folds != contiguous_folds(samples(), 5)


def test_the_report_section_states_the_gap(tmp_path: Path) -> None:
    folds = [FoldResult("random", i, 100, 0.98, 0.97) for i in range(5)]
    folds += [FoldResult("contiguous blocks", i, 100, 0.90 + 0.01 * i, 0.88) for i in range(5)]
    path = tmp_path / "patient_proxy.json"
    path.write_text(
        json.dumps(
            {
                "config": {"model": "lenet", "epochs": 20},
                "k": 5,
                "folds": [f.__dict__ for f in folds],
            }
        )
    )
    text = patient_proxy_markdown(path)
    assert "| contiguous blocks | 5 | 90.0%, 91.0%, 92.0%, 93.0%, 94.0% | 92.00% (± 1.58) |" in text
    assert "costs 6.0 points of accuracy" in text
    assert "(`python -m training patient-proxy --model lenet --epochs 20 --folds 5`)" in text
    assert "Not measured yet" in patient_proxy_markdown(tmp_path / "missing.json")
